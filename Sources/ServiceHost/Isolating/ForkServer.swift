import CProcessShims
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The process that makes worker processes: a copy of the `servicehost`
/// executable started once, which forks a worker per request.
///
/// Starting a worker by executing a Swift binary costs several
/// milliseconds (the runtime and Foundation load and relocate every time);
/// forking a process that already has them costs a fraction of that. The
/// fork server is started while it is still single-threaded and stays so,
/// which is what makes forking it safe: no other thread can be holding a lock
/// the child would inherit.
///
/// The workers are the fork server's children, and it reaps each one only
/// when the host asks, after the host has seen the worker's socket close. Until
/// then a dead worker stays a zombie, so its pid cannot be reused and the host
/// can `kill` it without racing anything; and the host itself never has to
/// reap processes it did not start (which would steal other code's children).
public enum ForkServer {
    /// The first argument that makes `servicehost` a fork server instead of a command.
    public static let argument = "__fork-server"
    /// The descriptor the control socket arrives on.
    static let controlDescriptor: Int32 = 3

    /// Runs the fork server when the process was started as one; returns
    /// otherwise. Call it first thing in `main`, before anything starts a thread.
    public static func runIfRequested(arguments: [String] = CommandLine.arguments) {
        guard arguments.count > 1, arguments[1] == argument else { return }
        serve(control: WorkerChannel(descriptor: controlDescriptor))
    }

    private static func serve(control: WorkerChannel) -> Never {
        // The host may have had descriptors open without close-on-exec (a
        // pipe to another child, say); held here, they would keep that pipe
        // from ever reaching its end. Only the standard ones and the control socket stay.
        closeInheritedDescriptors(above: controlDescriptor)
        // Out of the terminal's process group: a Ctrl-C must reach the host,
        // which stops each service properly, and not its workers directly.
        setpgid(0, 0)
        signal(SIGPIPE, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        warmUp()
        // A worker forked ahead of time waits for its socket, so that a
        // restart does not wait for a fork; the next spare is forked after
        // the answer has gone out.
        var spare = forkSpare(control: control)
        while let (request, passed) = control.receivePassing() {
            switch (request, passed) {
            case (.spawnWorker, let channel?):
                var worker: pid_t = -1
                if let ready = spare, (try? ready.link.send(.spawnWorker, passing: channel)) != nil {
                    worker = ready.pid
                } else {
                    // No spare, or it died: fork one now.
                    let server = getpid()
                    worker = fork()
                    if worker == 0 {
                        control.close()
                        WorkerProcess.run(channel: WorkerChannel(descriptor: channel), forkServer: server)
                    }
                }
                close(channel)
                spare?.link.close()
                spare = nil
                control.send(.spawned(pid: worker))
                spare = forkSpare(control: control)
            case (.spawnScan, let channel?):
                let server = getpid()
                let scanner = fork()
                if scanner == 0 {
                    // Like a worker, a scan (maybe inside a constructor that
                    // never returns) dies with a fork server that is replaced.
                    WorkerProcess.dieWithParent(server)
                    control.close()
                    spare?.link.close()
                    signal(SIGINT, SIG_DFL)
                    ScanProcess.run(channel: WorkerChannel(descriptor: channel))
                }
                close(channel)
                control.send(.spawned(pid: scanner))
            case (.reap(let pid), _):
                if let passed { close(passed) }
                control.send(.reaped(ExitStatus.reap(pid)))
            default:
                // Not a request (or a spawn without its socket): ignored.
                if let passed { close(passed) }
            }
        }
        // The host closed the control socket: it is gone or shutting down.
        if let spare {
            kill(spare.pid, SIGKILL)
            _ = ExitStatus.reap(spare.pid)
        }
        // Whatever still runs in this process group (a worker inside a
        // slow constructor, which reads nothing from its socket yet, or
        // a program a plugin started) must not outlive its host.
        kill(0, SIGKILL)
        _exit(0)
    }

    /// Does once, here, what every worker would otherwise do first: libffi
    /// maps its closure trampolines on the first allocation, and a closure
    /// freed here leaves them mapped in every fork.
    private static func warmUp() {
        final class Quiet: HostCallbackTarget {
            func pluginLog(level: Int32, message: String) {}
            func pluginRequestedStop() {}
            func pluginAsksWhetherToStop() -> Bool { false }
            func pluginAsksForStopDescriptor() -> Int32 { -1 }
        }
        let target = Quiet()
        _ = HostBinding(serviceName: "", settings: [:], target: target)
        _ = StopSignal()
    }

    /// A forked worker waiting for its socket on `link`; `nil` if fork failed.
    private static func forkSpare(control: WorkerChannel) -> (pid: pid_t, link: WorkerChannel)? {
        guard let (server, spare) = try? WorkerChannel.pair() else { return nil }
        let forkServer = getpid()
        let pid = fork()
        if pid == 0 {
            control.close()
            server.close()
            WorkerProcess.dieWithParent(forkServer)
            guard let (request, passed) = spare.receivePassing(), request == .spawnWorker, let channel = passed else { _exit(0) }
            spare.close()
            WorkerProcess.run(channel: WorkerChannel(descriptor: channel), forkServer: forkServer)
        }
        spare.close()
        guard pid > 0 else {
            server.close()
            return nil
        }
        return (pid, server)
    }

    static func closeInheritedDescriptors(above lowest: Int32) {
        let listed = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for descriptor in listed.compactMap({ Int32($0) }) where descriptor > lowest {
            close(descriptor)
        }
    }
}

/// The host's side of the fork server: starts it on first use, asks it for
/// workers and to reap them.
final class WorkerLauncher: @unchecked Sendable {
    let executable: String
    /// One request and its answer at a time on the control socket.
    private let lock = NSLock()
    private var control: WorkerChannel?
    private var serverPID: pid_t = 0

    /// When the running fork server was spawned, until it first answered:
    /// that answer also waits for it to start (a new process, the Swift
    /// runtime, a spare worker).
    private var serverStarting: ContinuousClock.Instant?
    /// Set by ``shutdown()``: no fork server is started after it.
    private var isShutDown = false
    /// The number of the running fork server (see ``Forked``).
    private var serverNumber = 0
    /// Why each replaced fork server was replaced, by number; one entry per
    /// replacement, which takes a stopped or dead server.
    private var replacements: [Int: String] = [:]
    private let logger: Logger
    /// How long the fork server may take to answer a request before it is
    /// taken for stopped or stuck, killed and replaced: a fork or a `waitpid`
    /// of a process already dead takes a fraction of this.
    static let answerTimeout = Limits.forkServerAnswerTimeout

    init(executable: String, logger: Logger = Logger(label: "servicehost.fork-server")) {
        self.executable = executable
        self.logger = logger
    }

    struct LaunchError: Error, CustomStringConvertible {
        let description: String
    }

    /// A new worker process, connected. The caller sends the assignment at
    /// once: the socket holds it until the worker reads it, so no handshake
    /// adds a round trip to every restart.
    /// `process` is a pidfd of the worker (-1 where the kernel has none): the
    /// worker is the fork server's child, unreaped until the host asks, so the
    /// pid cannot be reused before this descriptor is opened.
    func launch() throws(LaunchError) -> (channel: WorkerChannel, forked: Forked, process: Int32) {
        let (host, forked) = try connect(scan: false)
        return (host, forked, cprocess_pidfd_open(forked.pid))
    }

    /// Has the fork server fork a worker or a scan on a new socket pair; our end of it.
    private func connect(scan: Bool) throws(LaunchError) -> (channel: WorkerChannel, forked: Forked) {
        let host: WorkerChannel
        let child: WorkerChannel
        do {
            (host, child) = try WorkerChannel.pair()
        } catch {
            throw LaunchError(description: "cannot make a socket for the \(scan ? "scan" : "worker"): \(error)")
        }
        let forked = try spawn(with: child, scan: scan)
        // The fork server and the child have their copies; closing ours means an
        // end of file on `host` as soon as the child is gone.
        child.close()
        return (host, forked)
    }

    /// A worker or scan process, and which fork server forked it (they are
    /// numbered from 1 as they start), so that one whose server was replaced
    /// is not reaped through another.
    struct Forked: Sendable, Equatable {
        let pid: pid_t
        let server: Int
    }

    /// The deadline of an answer asked for now: ``answerTimeout``, or, for
    /// a new server's first answer on a loaded machine, until
    /// ``Limits/defaultScanTimeout`` after it was spawned.
    private func answerDeadlineLocked() -> ContinuousClock.Instant {
        let deadline = ContinuousClock.now + Self.answerTimeout
        return serverStarting.map { max(deadline, $0 + Limits.defaultScanTimeout) } ?? deadline
    }

    /// Collects the exit status of a worker whose socket has closed (after
    /// killing it, if need be). Each worker must be reaped exactly once.
    func reap(_ forked: Forked) -> ExitStatus {
        lock.lock()
        defer { lock.unlock() }
        // Its workers died with a replaced server (PR_SET_PDEATHSIG): that is
        // their real end; their zombies went to init with the server's death.
        if let why = replacements[forked.server] { return ExitStatus(.killedWithForkServer(why)) }
        guard let control, forked.server == serverNumber else { return ExitStatus(.unknown) }
        let asked = ContinuousClock.now
        let deadline = answerDeadlineLocked()
        let sent = control.send(.reap(pid: forked.pid), until: deadline)
        let answer: WorkerChannel.Received = switch sent {
        case .sent: control.receive(until: deadline)
        case .timedOut: .timedOut
        case .tooLarge, .failed: .endOfFile
        }
        guard case .message(.reaped(let status)) = answer else {
            let reason = switch answer {
            case .timedOut: "did not answer a request to reap worker \(forked.pid) within \((deadline - asked).milliseconds) ms"
            case .malformed(let what): "sent \(what) for a request to reap worker \(forked.pid)"
            case .message(let other): "answered \(other) to a request to reap worker \(forked.pid)"
            case .endOfFile, .woken: "is gone (its control socket is closed)"
            }
            replaceServerLocked(because: reason)
            return ExitStatus(.killedWithForkServer(replacements[forked.server] ?? "was replaced"))
        }
        return status
    }

    /// A throwaway scan process (see ``ScanProcess``), connected; reap it like a worker.
    func launchScan() throws(LaunchError) -> (channel: WorkerChannel, forked: Forked) {
        try connect(scan: true)
    }

    private func spawn(with worker: WorkerChannel, scan: Bool) throws(LaunchError) -> Forked {
        lock.lock()
        defer { lock.unlock() }
        for _ in 1...2 {
            let control = try serverControlLocked()
            let sent = (try? control.send(scan ? .spawnScan : .spawnWorker, passing: worker.descriptor)) != nil
            let asked = ContinuousClock.now
            let deadline = answerDeadlineLocked()
            if sent, case .message(let answer) = control.receive(until: deadline) {
                serverStarting = nil
                guard case .spawned(let pid) = answer, pid > 0 else {
                    // The server is fine; the system would not fork (out of processes or memory).
                    throw LaunchError(description: "the fork server could not fork a worker")
                }
                return Forked(pid: pid, server: serverNumber)
            }
            // The fork server is gone or stuck: end it and start a new one, once.
            replaceServerLocked(because: sent ? "did not answer a request for a worker within \((deadline - asked).milliseconds) ms"
                                              : "is gone (its control socket is closed)")
        }
        throw LaunchError(description: "the fork server could not start a worker")
    }

    private func replaceServerLocked(because reason: String) {
        control?.close()
        control = nil
        if serverPID > 0 {
            // Killed first: a stopped server would never see its socket close.
            kill(serverPID, SIGKILL)
            let status = ExitStatus.reap(serverPID)
            logger.error("the fork server (pid \(serverPID)) \(reason), \(status); a new one is started for the next worker")
            replacements[serverNumber] = "(pid \(serverPID)) \(reason) and was replaced"
        }
        serverPID = 0
    }

    private func serverControlLocked() throws(LaunchError) -> WorkerChannel {
        if let control { return control }
        // No new fork server once the host shuts down (a reload still scanning, say).
        guard !isShutDown else { throw LaunchError(description: "the host is shutting down") }
        let host: WorkerChannel
        let server: WorkerChannel
        do {
            (host, server) = try WorkerChannel.pair()
        } catch {
            throw LaunchError(description: "cannot make the fork server's socket: \(error)")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto a different number clears close-on-exec; the server end is never 3 itself.
        let source = server.descriptor == ForkServer.controlDescriptor ? fcntl(server.descriptor, F_DUPFD_CLOEXEC, 10) : server.descriptor
        posix_spawn_file_actions_adddup2(&actions, source, ForkServer.controlDescriptor)
        // Nothing else the host has open, close-on-exec or not, reaches the server.
        _ = cprocess_spawn_close_from(&actions, ForkServer.controlDescriptor + 1)
        // Whatever the spawning thread blocks or ignores, the server starts as a normal process.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        _ = cprocess_spawnattr_reset_signals(&attributes)
        let arguments = [executable, ForkServer.argument]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, &argv, environ)
        if source != server.descriptor { close(source) }
        server.close()
        guard result == 0 else {
            throw LaunchError(description: "cannot start the fork server \(executable): \(Errno(result))")
        }
        serverPID = pid
        serverStarting = .now
        serverNumber += 1
        control = host
        return host
    }

    /// Whether ``shutdown()`` was called: a child that ends now may have been ended by it.
    var hasShutDown: Bool { lock.withLock { isShutDown } }

    /// The fork server's pid, once it runs.
    var serverProcess: pid_t? { lock.withLock { serverPID > 0 ? serverPID : nil } }

    /// Ends the fork server: it exits when its control socket closes.
    func shutdown() {
        let pid: pid_t = lock.withLock {
            isShutDown = true
            control?.close()
            control = nil
            defer { serverPID = 0 }
            return serverPID
        }
        guard pid > 0 else { return }
        // It exits when its socket closes, unless it is stopped or stuck: then it is killed.
        let exited = cprocess_pidfd_open(pid)
        if exited >= 0 {
            if !ExitStatus.exited(pidfd: exited, by: .now + Self.answerTimeout) {
                logger.error("the fork server (pid \(pid)) did not exit within \(Self.answerTimeout.milliseconds) ms of the host's shutdown; killed")
                kill(pid, SIGKILL)
            }
            close(exited)
        }
        _ = ExitStatus.reap(pid)
    }

    deinit { shutdown() }
}
