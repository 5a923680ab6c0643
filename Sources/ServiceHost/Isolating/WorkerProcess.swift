import CProcessShims
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The main of a worker process: load one plugin, run one service's run
/// with the same ``BaseService`` event loop and libffi path as thread
/// isolation, report to the host, exit.
///
/// A fresh process per run, as a process supervisor would: whatever a
/// crashed or stopped run left behind goes with its process.
enum WorkerProcess {
    /// The exit status of a worker whose plugin closed its socket.
    static let socketClosedStatus: Int32 = 71

    /// Makes the worker die with its parent, the fork server (which ends its
    /// process group when the host goes), before any plugin code runs; exits
    /// at once if the parent is already gone.
    static func dieWithParent(_ forkServer: pid_t) {
        _ = cprocess_set_parent_death_signal(SIGKILL)
        if getppid() != forkServer { _exit(0) }
    }

    /// Sends a report; a socket the plugin closed (EBADF) ends the worker with
    /// ``socketClosedStatus``, which the host reports as such: the host could
    /// not otherwise tell a live worker it cannot hear from a slow one.
    static func sendOrExit(_ message: WorkerMessage, on channel: WorkerChannel) {
        if case .failed(errno: let code) = channel.send(message), code == EBADF || code == ENOTSOCK {
            _exit(socketClosedStatus)
        }
    }

    static func run(channel: WorkerChannel, forkServer: pid_t) -> Never {
        dieWithParent(forkServer)
        // A normal process for the plugin and whatever it starts: no signal
        // blocked, every disposition at its default (the fork server's, and
        // the Swift runtime's crash handlers, which would print a Swift
        // backtrace for every plugin crash and delay the worker's death; the
        // host reports the signal itself). Sends use MSG_NOSIGNAL, so SIGPIPE
        // needs no ignoring.
        cprocess_reset_signals()
        guard case .message(.start(let assignment)) = channel.receive() else { _exit(64) }
        // What the service kept comes right after its assignment: its
        // descriptors, then its bytes.
        var descriptors: [String: Int32] = [:]
        var keptSize: UInt64 = 0
        receiving: while true {
            switch channel.receive() {
            case .message(.keptDescriptor(let name)):
                guard let descriptor = channel.takePassedDescriptor() else { _exit(64) }
                guard descriptors.count < KeptState.maxDescriptors, descriptors[name] == nil else {
                    close(descriptor)
                    continue
                }
                descriptors[name] = descriptor
            case .message(.keptState(let size)):
                keptSize = size
                break receiving
            default:
                _exit(64)
            }
        }
        let kept = keptSize == 0 ? nil : channel.mapPassedSealedBytes(size: Int(keptSize))
        if keptSize > 0, kept == nil { _exit(64) }
        let loops = LoopCounter()
        if let watchdog = assignment.watchdog {
            // Proves the process runs (not stopped or frozen) every half
            // watchdog period, and carries the loop count. Without a watchdog
            // nothing needs that proof, and the service's own thread reports
            // the count (``WorkerService/loopReportPeriod``): no thread, and
            // no wake-up of worker or host, for it.
            startHeartbeat(channel: channel, every: watchdog / 2, loops: loops)
        }

        // The host staged and checked the copy; the worker only loads it.
        let staged = StagedPlugin(file: assignment.file, identity: FileIdentity(stat()), privateCopy: assignment.privateCopy,
                                  containsSwiftCode: assignment.containsSwiftCode, ownsCopy: false)
        let image: PluginImage
        // The host's start_timeout_ms for loading counts from here, not from the fork.
        sendOrExit(.loading, on: channel)
        do {
            image = try PluginLoader.open(staged)
        } catch {
            channel.send(.loadFailed(code: error.code.description, reason: error.reason))
            _exit(0)
        }
        sendOrExit(.loaded(version: image.version), on: channel)

        let service = WorkerService(assignment: assignment, image: image, channel: channel, loops: loops,
                                    kept: kept, descriptors: descriptors)
        if assignment.watchdog != nil || assignment.startTimeout != nil {
            let clock = CallClock(loopLimit: assignment.watchdog, createLimit: assignment.startTimeout) { call, elapsed in
                // Say why, then die at once: the host sees the reason and the end of file.
                channel.send(.hung(call: call == .loop ? 0 : 1, elapsedNanoseconds: Int64(elapsed.milliseconds) * 1_000_000))
                kill(getpid(), SIGKILL)
            }
            service.callClock = clock
            Watchdog.shared.watch(clock)
        }
        startReader(channel: channel, signal: service.stopSignal)
        reportThreadExit(on: channel, file: assignment.file)

        do {
            if let failure = try service.start() {
                channel.send(.createFailed(code: failure.code))
                _exit(0)
            }
            sendOrExit(.created, on: channel)
            // Reported before svc_stop runs, so that the host can tell a crash
            // or hang in svc_stop from one in svc_loop.
            var report = WorkerStopReport(service.runEventLoop())
            report.loops = loops.value
            sendOrExit(.stopped(report), on: channel)
            try service.stop()
        } catch {
            channel.send(.stopped(WorkerStopReport(kind: .failed, code: -1, message: "worker: \(error)")))
        }
        // _exit, not exit: the worker is a fork of the fork server, whose
        // atexit handlers are not this process's to run.
        _exit(0)
    }
}

extension WorkerProcess {
    /// Reads the host's orders on a thread of its own, so that a stop reaches
    /// the service while the service's thread is inside the plugin.
    ///
    /// A bare pthread: the fork server never starts a Foundation thread (it
    /// must stay single-threaded), so the first Foundation `Thread` in each
    /// worker would pay for setting up Foundation's threading on every restart.
    static func startReader(channel: WorkerChannel, signal: StopSignal) {
        spawnOrExit(name: "worker:orders", channel: channel) {
            while true {
                switch channel.receive() {
                case .message(.stop): signal.raise(.ordered)
                case .endOfFile:
                    // A descriptor that is no longer open: the plugin closed it. Otherwise
                    // the host is gone; nobody supervises this run any more.
                    _exit(fcntl(channel.descriptor, F_GETFD) < 0 ? WorkerProcess.socketClosedStatus : 70)
                case .malformed: _exit(65)  // the host's side cannot be trusted any more
                default: continue
                }
            }
        }
    }

    /// Starts a named thread (``HostThread``, a bare pthread); a worker that
    /// cannot have it tells the host why and exits.
    private static func spawnOrExit(name: String, channel: WorkerChannel, _ body: @escaping @Sendable () -> Void) {
        do {
            try HostThread.spawn(name: name, body)
        } catch {
            _ = channel.send(.log(level: 3, message: "worker: \(error)"), until: .now + .seconds(1))
            _exit(WorkerProcess.noThreadStatus)
        }
    }

    /// The exit status of a worker that could not create one of its threads.
    static let noThreadStatus: Int32 = 71

    /// The channel the main thread's exit is reported on (set once, before plugin code runs).
    nonisolated(unsafe) private static var exitChannel: WorkerChannel?
    nonisolated(unsafe) private static var exitReport = ""

    /// Arms a thread-specific value on the main thread whose destructor runs
    /// only if the thread ends without returning here: a plugin that called
    /// `pthread_exit` in one of its calls. The worker says so and exits,
    /// where it would otherwise live on without a service.
    static func reportThreadExit(on channel: WorkerChannel, file: String) {
        exitChannel = channel
        exitReport = "\(file): svc_loop called pthread_exit (process isolation); the service's thread is gone"
        var key = pthread_key_t()
        guard pthread_key_create(&key, { _ in
            if let channel = WorkerProcess.exitChannel {
                _ = channel.send(.stopped(WorkerStopReport(kind: .failed, code: -1, message: WorkerProcess.exitReport)))
            }
            _exit(WorkerProcess.threadExitStatus)
        }) == 0 else { return }
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
    }

    /// The exit status of a worker whose plugin called `pthread_exit` on the service's thread.
    static let threadExitStatus: Int32 = 72

    /// Tells the host every `period` that this process still runs, so that
    /// the host can kill a worker that was stopped (SIGSTOP) or frozen, which
    /// the worker's own watchdog cannot notice; and how many loop turns ran.
    static func startHeartbeat(channel: WorkerChannel, every period: Duration, loops: LoopCounter) {
        let micros = UInt32(clamping: max(1_000, period.nanoseconds / 1_000))
        spawnOrExit(name: "worker:alive", channel: channel) {
            while true {
                usleep(micros)
                WorkerProcess.sendOrExit(.alive(loops: loops.value), on: channel)
            }
        }
    }
}

/// The service as a worker runs it: the plugin's entry points through
/// libffi, its callbacks forwarded to the host over the channel.
final class WorkerService: BaseService, HostCallbackTarget, @unchecked Sendable {
    private let image: PluginImage
    private let channel: WorkerChannel
    private var binding: HostBinding?
    private var instance: PluginInstance? {
        didSet { loopCall = instance?.loopCall }
    }
    /// `instance`'s loop call, read on every loop turn; only this thread touches it.
    @exclusivity(unchecked) private var loopCall: LoopCall?

    /// What the service kept when this run began (`state_load`).
    private let kept: UnsafeRawBufferPointer?
    /// The descriptors kept when this run began (`fd_load` hands out copies).
    private let descriptors: [String: Int32]
    /// The names the host keeps a descriptor under now, as this run changed
    /// them: the per-service limit is checked here, before anything is sent.
    private let keptNames: Mutex<Set<String>>
    /// The keeps refused in this run (the first of each code is logged).
    private let refusals = KeptState.Refusals()

    init(assignment: WorkerAssignment, image: PluginImage, channel: WorkerChannel, loops: LoopCounter,
         kept: UnsafeRawBufferPointer?, descriptors: [String: Int32] = [:]) {
        self.image = image
        self.channel = channel
        self.kept = kept
        self.descriptors = descriptors
        keptNames = Mutex(Set(descriptors.keys))
        // A heartbeat reports the count when there is a watchdog.
        clockReadEvery = assignment.watchdog != nil ? nil : assignment.interval > .zero ? 1 : 1_024
        super.init(name: assignment.name, configuration: ServiceConfiguration(
            interval: assignment.interval, watchdog: assignment.watchdog, startTimeout: assignment.startTimeout,
            settings: assignment.settings), loopCounter: loops)
        binding = HostBinding(serviceName: assignment.name, settings: assignment.settings, target: self, offersState: true)
    }

    override func onCreate() throws(ServiceFailure) {
        guard let binding else { throw ServiceFailure(code: -1, message: "\(image.file): \(HostBinding.allocationFailure)") }
        switch PluginInstance.create(image: image, binding: binding) {
        case .success(let created): instance = created
        case .failure(let failure):
            throw ServiceFailure(code: failure.code, message: "\(image.file): svc_create returned \(failure.code)")
        }
    }

    override func onLoop() -> LoopOutcome {
        let result = loopCall.unsafelyUnwrapped()
        if let clockReadEvery {
            turnsSinceClockRead &+= 1
            if turnsSinceClockRead >= clockReadEvery { reportLoopsIfDue() }
        }
        return result == 0 ? .continue : LoopOutcome(pluginResult: result, file: image.file)
    }

    /// How often, at most, the service's thread tells the host its loop
    /// count when no heartbeat does (no watchdog); the stop report has the
    /// last. Metrics of a process-isolated service lag by up to this much.
    static let loopReportPeriod = Duration.seconds(5)
    /// Every how many turns this thread reads the clock to see whether the
    /// count is due (a busy loop, with no interval, only once per 1,024);
    /// `nil` when a heartbeat thread reports it instead.
    private let clockReadEvery: UInt32?
    private var turnsSinceClockRead: UInt32 = 0
    private var nextLoopReport = ContinuousClock.now + loopReportPeriod
    private var reportedLoops: UInt64 = 0

    private func reportLoopsIfDue() {
        turnsSinceClockRead = 0
        let now = ContinuousClock.now
        guard now >= nextLoopReport else { return }
        nextLoopReport = now + Self.loopReportPeriod
        let count = loopCounter.value
        guard count != reportedLoops else { return }
        reportedLoops = count
        WorkerProcess.sendOrExit(.alive(loops: count), on: channel)
    }

    override func onStop() {
        instance?.stop()
        instance = nil
    }

    func pluginLog(level: Int32, message: String) {
        // Sent before the call returns, so a crash right after loses nothing.
        WorkerProcess.sendOrExit(.log(level: level, message: message), on: channel)
    }

    func pluginRequestedStop() {
        requestStop()
    }

    /// Hands the bytes to the host at once, in a sealed memfd: what a run
    /// saved before it crashed survives the crash.
    func pluginSavesState(_ bytes: UnsafeRawPointer?, count: Int, in run: KeptState.Run?) -> Int32 {
        guard count >= 0, bytes != nil || count == 0 else { return -EINVAL }
        guard count <= Limits.maxKeptState else { return -E2BIG }
        guard count > 0 else {
            if case .failed(errno: let code) = channel.send(.stateSaved(size: 0)) { return -code }
            return 0
        }
        do {
            try channel.send(.stateSaved(size: UInt64(count)), withSealedCopyOf: UnsafeRawBufferPointer(start: bytes, count: count))
        } catch {
            return -error.code
        }
        return 0
    }

    func pluginLoadsState(in run: KeptState.Run?) -> UnsafeRawBufferPointer? { kept }

    /// Passes a copy of the descriptor to the host at once (`SCM_RIGHTS`).
    func pluginKeepsDescriptor(_ descriptor: Int32, named name: String?, in run: KeptState.Run?) -> Int32 {
        let name = name ?? ""
        let code = keep(descriptor, named: name)
        if code != 0, code != -EBADF, refusals.isFirst(code) {
            WorkerProcess.sendOrExit(.keepRefused(name: name, code: code), on: channel)
        }
        return code
    }

    private func keep(_ descriptor: Int32, named name: String) -> Int32 {
        guard KeptState.isValidName(name) else { return -EINVAL }
        guard descriptor >= -1 else { return -EBADF }
        if descriptor == -1 {
            keptNames.withLock { _ = $0.remove(name) }
            if case .failed(errno: let code) = channel.send(.descriptorKept(name: name, present: false)) { return -code }
            return 0
        }
        guard fcntl(descriptor, F_GETFD) >= 0 else { return -EBADF }
        let admitted = keptNames.withLock { names in
            if names.contains(name) { return true }
            guard names.count < KeptState.maxDescriptors else { return false }
            names.insert(name)
            return true
        }
        guard admitted else { return -ENOSPC }
        do {
            try channel.send(.descriptorKept(name: name, present: true), passing: descriptor)
        } catch {
            return -error.code
        }
        return 0
    }

    func pluginLoadsDescriptor(named name: String?, in run: KeptState.Run?) -> Int32 {
        guard let name, let kept = descriptors[name] else { return -ENOENT }
        let copy = fcntl(kept, F_DUPFD_CLOEXEC, 0)
        return copy >= 0 ? copy : -errno
    }
}
