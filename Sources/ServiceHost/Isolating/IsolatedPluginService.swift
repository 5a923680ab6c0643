import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The ``BaseService`` adapter for a plugin that runs in worker processes
/// (`isolation = "process"`): each start forks a worker, which loads the
/// plugin and runs the service's loop; this side waits for what the worker
/// reports, forwards its log lines, and turns its death into a failure with
/// a readable reason (`killed by SIGSEGV`, `exited with status 3`).
///
/// The plugin is never loaded into the host. The host checks and stages each
/// version of the file (ELF headers, private copy) and keeps the last one
/// that worked, so a broken new version rolls back as in thread isolation.
final class IsolatedPluginService: BaseService, @unchecked Sendable {
    let file: String
    private let loader: PluginLoader
    private let launcher: WorkerLauncher
    private let logger: Logger
    private let versions: PluginVersions<StagedPlugin>
    /// Whether the version in use ever loaded and created in a worker.
    private let verified = Atomic<Bool>(false)
    /// The worker of the current run; read by the stop observer from any thread.
    private let worker = Mutex<Worker?>(nil)
    /// When an ordered stop must be over; touched only on the service's thread.
    private var stopDeadline: ContinuousClock.Instant?
    /// The last start failed to load a plugin that never loaded: restarting is pointless.
    private let unloadable = Atomic<Bool>(false)

    private struct Worker: Sendable {
        let channel: WorkerChannel
        let forked: WorkerLauncher.Forked
        var pid: pid_t { forked.pid }
        /// A pidfd of the worker, readable once it exited; -1 if the kernel gave none.
        let process: Int32
        /// Wakes this service's thread from a wait on the worker when a stop
        /// is ordered. Made per run, so that a service holds no descriptor
        /// while it is not running.
        let wakeup: Wakeup
    }

    /// Why a worker's start failed.
    private struct StartFailure: Error {
        let failure: ServiceFailure
        /// The plugin could not be loaded at all (not a crash or a create error).
        let isLoadError: Bool
        /// Why a new version is refused, in the words thread isolation uses;
        /// `nil` when the failure is not the version's fault (no worker could
        /// be started, or the host killed it to honour a stop).
        let reloadReason: String?
    }

    init(name: String, file: String, configuration: ServiceConfiguration, loader: PluginLoader,
         launcher: WorkerLauncher, logger: Logger) throws(PluginError) {
        let staged = try loader.stage(file: file, scanTimeout: configuration.startTimeout)
        self.file = file
        self.loader = loader
        self.launcher = launcher
        var logger = logger
        logger[metadataKey: "service"] = "\(name)"
        self.logger = logger
        versions = PluginVersions(file: file, current: staged, name: nil)
        super.init(name: name, configuration: configuration)
        updateMetadata { $0.pluginFile = file }
        stopSignal.observer = { [weak self] request in
            guard request == .ordered, let self else { return }
            // The worker ends its loop; this side's wait learns the deadline.
            worker.withLock { worker in
                _ = worker?.channel.send(.stop, until: .now + configuration.stopTimeout)
                worker?.wakeup.signal()
            }
        }
    }

    override var enforcesStopTimeout: Bool { true }

    override var supervisesItsOwnCalls: Bool { true }

    override func stopsForGood(after reason: StopReason) -> Bool {
        unloadable.load(ordering: .relaxed)
    }

    /// Whether the file differs from the version in use and has not been refused already.
    var fileChanged: Bool { versions.fileChanged }

    // MARK: Steps

    override func onCreate() throws(ServiceFailure) {
        stopDeadline = nil
        unloadable.store(false, ordering: .relaxed)
        let (current, candidate) = stagedToTry()
        if let candidate {
            switch startWorker(candidate) {
            case .success(let version):
                let previous = versions.adopt(candidate, name: version)
                verified.store(true, ordering: .relaxed)
                updateMetadata { $0.pluginVersion = version }
                let next = version ?? "(no version)"
                logger.notice("reloaded \(file): \(previous) -> \(next)")
                report(.reloaded(from: previous, to: next))
                return
            case .failure(let failure):
                if let reason = failure.reloadReason, stopSignal.request != .ordered {
                    versions.reject(candidate.identity, reason: reason, for: self, logger: logger)
                }
                if stopSignal.request == .ordered { throw failure.failure }
            }
        }
        switch startWorker(current) {
        case .success(let version):
            versions.name(version)
            verified.store(true, ordering: .relaxed)
            updateMetadata { $0.pluginVersion = version }
        case .failure(let failure):
            if failure.isLoadError, !verified.load(ordering: .relaxed) {
                unloadable.store(true, ordering: .relaxed)
            }
            throw failure.failure
        }
    }

    override func onLoop() -> LoopOutcome {
        guard let worker = worker.withLock({ $0 }) else {
            return .failed(ServiceFailure(code: -1, message: "\(file): no worker"))
        }
        var hung: String?
        var liveness = Liveness(limit: livenessLimit)
        while true {
            let received = worker.channel.receive(until: liveness.deadline(or: stopDeadline), wake: worker.wakeup.descriptor,
                                                  process: worker.process)
            if case .message = received { liveness.heard() }
            switch received {
            case .message(.log(let level, let message)):
                logger.pluginLine(level: level, message)
            case .message(.hung(let call, let elapsed)):
                hung = hungReason(call: call, elapsed: .nanoseconds(elapsed))
            case .timedOut where liveness.expired(before: stopDeadline):
                hung = killSilent(worker, &liveness)
            case .message(.stopped(let report)):
                switch report.kind {
                case .finished: return .done
                case .failed: return .failed(ServiceFailure(code: report.code, message: report.message))
                case .requested:
                    requestStop()
                    return .continue
                case .ordered:
                    return .continue
                }
            case .message:
                continue
            case .malformed(let what):
                kill(worker.pid, SIGKILL)
                let status = finish(worker)
                return .failed(ServiceFailure(code: -1, message: "\(file): the worker sent \(what) in svc_loop; worker \(status)"))
            case .endOfFile:
                let status = finish(worker)
                let message = hung ?? "\(file): worker \(status) in svc_loop"
                return .failed(ServiceFailure(code: status.code, message: message))
            case .timedOut:
                logger.error("svc_loop did not return within stop_timeout_ms (\(configuration.stopTimeout.milliseconds) ms) of the stop; killing the worker")
                kill(worker.pid, SIGKILL)
                stopDeadline = nil
            case .woken:
                worker.wakeup.clear()
                noteOrderedStop()
            }
        }
    }

    override func onStop() {
        guard let worker = worker.withLock({ $0 }) else { return }
        // The worker runs svc_stop and exits; it gets what is left of an
        // ordered stop's time, or a whole stop timeout.
        let deadline = stopDeadline ?? .now + configuration.stopTimeout
        while true {
            switch worker.channel.receive(until: deadline, process: worker.process) {
            case .message(.log(let level, let message)):
                logger.pluginLine(level: level, message)
            case .message, .woken:
                continue
            case .malformed(let what):
                kill(worker.pid, SIGKILL)
                let status = finish(worker)
                record("\(file): the worker sent \(what) in svc_stop; worker \(status)", code: status.code)
                return
            case .timedOut:
                kill(worker.pid, SIGKILL)
                let status = finish(worker)
                record("\(file): svc_stop did not return within stop_timeout_ms (\(configuration.stopTimeout.milliseconds) ms); worker \(status)", code: status.code)
                return
            case .endOfFile:
                let status = finish(worker)
                if status != ExitStatus(.exited(0)) {
                    record("\(file): worker \(status) in svc_stop", code: status.code)
                }
                return
            }
        }
    }

    // MARK: Workers

    /// Forks a worker for `staged` and waits until its `svc_create` returned.
    private func startWorker(_ staged: StagedPlugin) -> Result<String?, StartFailure> {
        let launched: (channel: WorkerChannel, forked: WorkerLauncher.Forked, process: Int32)
        let wakeup: Wakeup
        do {
            wakeup = try Wakeup()
        } catch {
            return .failure(StartFailure(failure: ServiceFailure(code: -1, message: "\(file): no descriptors left for a worker: \(error)"),
                                         isLoadError: false, reloadReason: nil))
        }
        do {
            launched = try launcher.launch()
        } catch {
            return .failure(StartFailure(failure: ServiceFailure(code: -1, message: "\(file): \(error)"), isLoadError: false,
                                         reloadReason: nil))
        }
        let current = Worker(channel: launched.channel, forked: launched.forked, process: launched.process, wakeup: wakeup)
        logger.debug("worker \(current.pid) loads \(file)")
        // The assignment goes first: the stop observer may send `.stop` as
        // soon as the worker is published, and a worker expects `.start` first.
        let sent = launched.channel.send(.start(WorkerAssignment(
            name: name, file: file, privateCopy: staged.privateCopy, containsSwiftCode: staged.containsSwiftCode,
            interval: configuration.interval, watchdog: configuration.watchdog, startTimeout: configuration.startTimeout,
            settings: configuration.settings)), until: .now + configuration.stopTimeout)
        guard sent.succeeded else {
            kill(current.pid, SIGKILL)
            let status = finish(current)
            let why: String = switch sent {
            case .tooLarge(let size):
                "service '\(name)': its assignment ([config] and paths) is \(size) bytes encoded; a process-isolated service accepts at most \(WorkerMessage.maxSize)"
            case .timedOut:
                "service '\(name)': the worker did not take its assignment within stop_timeout_ms (\(configuration.stopTimeout.milliseconds) ms); worker \(status)"
            case .failed(let code):
                "service '\(name)': cannot send the worker its assignment: \(Errno(code)); worker \(status)"
            case .sent:
                ""
            }
            return .failure(StartFailure(failure: ServiceFailure(code: -1, message: "\(file): \(why)"),
                                         isLoadError: false, reloadReason: nil))
        }
        worker.withLock { $0 = current }
        // A stop ordered before the worker was published could not be passed on.
        if stopSignal.request == .ordered {
            _ = launched.channel.send(.stop, until: .now + configuration.stopTimeout)
            noteOrderedStop()
        }
        var version: String?
        var loaded = false
        var hung: String?
        var overran: String?
        var killedForStop = false
        var liveness = Liveness(limit: livenessLimit)
        // start_timeout_ms covers loading too: the scan's verdict may be cached
        // while the worker's own load hangs (the worker's clock covers svc_create only).
        var startDeadline = configuration.startTimeout.map { ContinuousClock.now + $0 }
        while true {
            let deadline = [liveness.deadline(or: stopDeadline), startDeadline].compactMap { $0 }.min()
            let received = launched.channel.receive(until: deadline, wake: current.wakeup.descriptor, process: launched.process)
            if case .message = received { liveness.heard() }
            switch received {
            case .timedOut where liveness.expired(before: stopDeadline):
                hung = killSilent(current, &liveness)
            case .timedOut where startDeadline.map { ContinuousClock.now >= $0 } == true
                && stopDeadline.map { ContinuousClock.now < $0 } != false:
                startDeadline = nil
                kill(current.pid, SIGKILL)
                let step = loaded ? "svc_create" : "loading the plugin"
                let why = "\(step) did not finish within start_timeout_ms (\(configuration.startTimeout?.milliseconds ?? 0) ms)"
                overran = why
                hung = "\(file): hung: \(why); worker killed"
                logger.error("\(hung!)")
            case .message(.log(let level, let message)):
                logger.pluginLine(level: level, message)
            case .message(.loaded(let reported)):
                loaded = true
                version = reported
                // The worker's own clock times svc_create and says how long it
                // ran; this deadline is the backstop for a worker that cannot.
                startDeadline = configuration.startTimeout.map { ContinuousClock.now + $0 * 2 }
            case .message(.created):
                return .success(version)
            case .message(.loadFailed(let code, let reason)):
                _ = finish(current)
                let error = PluginError(PluginError.Code(named: code) ?? .loadFailed, file: file, reason: reason)
                return .failure(StartFailure(failure: ServiceFailure(code: -1, message: error.description), isLoadError: true,
                                             reloadReason: error.reason))
            case .message(.createFailed(let code)):
                _ = finish(current)
                return .failure(StartFailure(
                    failure: ServiceFailure(code: code, message: "\(file): svc_create returned \(code)"), isLoadError: false,
                    reloadReason: "svc_create of the new version \(version ?? "(no version)") returned \(code)"))
            case .message(.hung(let call, let elapsed)):
                hung = hungReason(call: call, elapsed: .nanoseconds(elapsed))
            case .message:
                continue
            case .malformed(let what):
                kill(current.pid, SIGKILL)
                let status = finish(current)
                return .failure(StartFailure(
                    failure: ServiceFailure(code: -1, message: "\(file): the worker sent \(what) in svc_create; worker \(status)"),
                    isLoadError: false, reloadReason: "the new version's worker sent \(what)"))
            case .endOfFile:
                let status = finish(current)
                let message = hung ?? "\(file): worker \(status) in svc_create"
                return .failure(StartFailure(failure: ServiceFailure(code: status.code, message: message), isLoadError: false,
                                             reloadReason: killedForStop ? nil : overran ?? "the new version's worker \(status) in svc_create"))
            case .timedOut:
                kill(current.pid, SIGKILL)
                killedForStop = true
                stopDeadline = nil
            case .woken:
                current.wakeup.clear()
                noteOrderedStop()
            }
        }
    }

    /// Reaps a worker whose channel reached its end, and forgets it.
    ///
    /// A worker can close its socket and live on (a plugin that closes every
    /// descriptor): it gets a stop timeout to exit, then is killed, so that
    /// the fork server's wait for it never blocks.
    private func finish(_ finished: Worker) -> ExitStatus {
        // Unpublished before its socket closes, so that the stop observer can
        // never send on a descriptor number something else has reused.
        worker.withLock { if $0?.pid == finished.pid { $0 = nil } }
        finished.channel.close()
        var closedAlive = false
        if finished.process >= 0 {
            if !Self.waitForExit(finished.process, until: .now + configuration.stopTimeout) {
                closedAlive = true
                kill(finished.pid, SIGKILL)
            }
            close(finished.process)
        } else {
            // No pidfd: a killed worker's status is kept all the same, and a zombie ignores the signal.
            kill(finished.pid, SIGKILL)
        }
        let status = launcher.reap(finished.forked)
        return closedAlive || status == ExitStatus(.exited(WorkerProcess.socketClosedStatus)) ? ExitStatus(.closedItsConnection) : status
    }

    /// Whether the process of `pidfd` exited by `deadline`.
    private static func waitForExit(_ pidfd: Int32, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            let left = deadline - ContinuousClock.now
            let ready = poll(&fds, 1, left <= .zero ? 0 : Int32(clamping: left.milliseconds + 1))
            if ready > 0 { return true }
            if ready < 0, errno == EINTR { continue }
            if ready < 0 || ContinuousClock.now >= deadline { return false }
        }
    }

    /// How long a worker with a watchdog may stay silent: it says it is alive
    /// every half watchdog period, so only a stopped or frozen process misses this.
    private var livenessLimit: Duration? {
        configuration.watchdog.map { max($0 * 4, .milliseconds(250)) }
    }

    /// Kills a worker that fell silent for longer than its liveness limit; the reason to report.
    private func killSilent(_ silent: Worker, _ liveness: inout Liveness) -> String {
        let silence = liveness.silence
        liveness = Liveness(limit: nil)
        kill(silent.pid, SIGKILL)
        let reason = "\(file): hung: the worker process made no progress for \(silence.milliseconds) ms (watchdog_ms = \(configuration.watchdog?.milliseconds ?? 0), process isolation: stopped or frozen); worker killed"
        logger.error("\(reason)")
        return reason
    }

    private func noteOrderedStop() {
        if stopSignal.request == .ordered, stopDeadline == nil {
            stopDeadline = .now + configuration.stopTimeout
        }
    }

    private func hungReason(call: UInt8, elapsed: Duration) -> String {
        call == 0
            ? "\(file): hung: svc_loop ran for \(elapsed.milliseconds) ms (watchdog_ms = \(configuration.watchdog?.milliseconds ?? 0)); worker killed"
            : "\(file): hung: svc_create ran for \(elapsed.milliseconds) ms (start_timeout_ms = \(configuration.startTimeout?.milliseconds ?? 0)); worker killed"
    }

    private func record(_ message: String, code: Int32) {
        logger.error("\(message)")
        updateMetadata { $0.record(ServiceFailure(code: code, message: message)) }
    }

    // MARK: Reload

    /// The staged version in use, and a newly staged one to try first when the file changed.
    private func stagedToTry() -> (current: StagedPlugin, candidate: StagedPlugin?) {
        let current = versions.current
        guard let changed = versions.changedFile(logger: logger) else { return (current, nil) }
        do {
            return (current, try loader.stage(file: file, scanTimeout: configuration.startTimeout))
        } catch {
            versions.reject(changed, reason: error.reason, for: self, logger: logger)
            return (current, nil)
        }
    }
}

/// When a worker was last heard from, and whether its silence has lasted too long.
private struct Liveness {
    let limit: Duration?
    private var lastHeard = ContinuousClock.now

    init(limit: Duration?) { self.limit = limit }

    mutating func heard() { lastHeard = .now }

    var silence: Duration { .now - lastHeard }

    /// The earlier of the liveness deadline and `other`.
    func deadline(or other: ContinuousClock.Instant?) -> ContinuousClock.Instant? {
        guard let limit else { return other }
        let own = lastHeard + limit
        return other.map { min($0, own) } ?? own
    }

    /// Whether a timeout was the silence's, not the stop deadline's.
    func expired(before stopDeadline: ContinuousClock.Instant?) -> Bool {
        guard let limit else { return false }
        let now = ContinuousClock.now
        if let stopDeadline, now >= stopDeadline { return false }
        return now >= lastHeard + limit
    }
}
