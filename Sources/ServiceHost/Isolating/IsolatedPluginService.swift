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
    /// What the plugin keeps across its runs and versions (`state_save` and
    /// `fd_keep` in the worker, passed to the host at once, and to the next worker).
    let keptState: KeptState
    /// The worker an overlapping reload replaced, while the service's
    /// thread waits for it to end, and what is told once it has.
    private let replaced = Mutex<(session: WorkerSession, ended: Completion)?>(nil)
    /// Whether the version in use ever loaded and created in a worker.
    private let verified = Atomic<Bool>(false)
    /// The worker of the current run; read by the stop observer from any thread.
    private let worker = Mutex<WorkerSession?>(nil)
    /// The loop turns of the runs whose workers are gone (changed under `worker`'s lock).
    private let loopsOfEndedRuns = LoopCounter()
    /// The last start failed to load a plugin that never loaded: restarting is pointless.
    private let unloadable = Atomic<Bool>(false)

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

    /// - Parameter staged: `file` already staged (see ``Prefetcher``); by default it is staged here.
    init(name: String, file: String, configuration: ServiceConfiguration, loader: PluginLoader,
         launcher: WorkerLauncher, logger: Logger, staged: StagedPlugin? = nil,
         keptState: KeptState = KeptState()) throws(PluginError) {
        let staged = if let staged { staged } else { try loader.stage(file: file, scanTimeout: configuration.startTimeout) }
        self.file = file
        self.loader = loader
        self.launcher = launcher
        self.keptState = keptState
        var logger = logger
        logger[metadataKey: "service"] = "\(name)"
        self.logger = logger
        versions = PluginVersions(file: file, current: staged, name: nil)
        super.init(name: name, configuration: configuration)
        updateMetadata { $0.pluginFile = file }
        stopSignal.observer = { [weak self] request in
            guard request == .ordered, let self else { return }
            // The worker ends its loop; this side's wait learns the deadline.
            worker.withLock { $0 }?.orderStop()
        }
    }

    override var enforcesStopTimeout: Bool { true }

    override var supervisesItsOwnCalls: Bool { true }

    override func stopsForGood(after reason: StopReason) -> Bool {
        unloadable.load(ordering: .relaxed)
    }

    /// Whether the file differs from the version in use and has not been refused already.
    var fileChanged: Bool { versions.fileChanged }
    var sha256: String? { versions.current.sha256 }
    override var isolation: Isolation { .process }
    override var processID: Int32? { worker.withLock { $0?.pid } }

    // MARK: Steps

    override func onCreate() throws(ServiceFailure) {
        unloadable.store(false, ordering: .relaxed)
        let (current, candidate) = stagedToTry()
        if let candidate {
            switch startWorker(candidate) {
            case .success(let (version, _)):
                adopt(candidate, version: version)
                return
            case .failure(let failure):
                if let reason = failure.reloadReason, stopSignal.request != .ordered {
                    versions.reject(candidate.identity, reason: reason, as: failure.isLoadError ? .refused : .rolledBack,
                                    for: self, logger: logger)
                }
                if stopSignal.request == .ordered { throw failure.failure }
            }
        }
        switch startWorker(current) {
        case .success(let (version, _)):
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

    /// Makes `candidate` the version in use, and says so.
    private func adopt(_ candidate: StagedPlugin, version: String?) {
        versions.adopt(candidate, name: version, for: self, logger: logger)
        verified.store(true, ordering: .relaxed)
    }

    /// The worker the service's thread last waited on in its loop; only that thread touches it.
    private weak var loopedSession: WorkerSession?

    override func onLoop() -> LoopOutcome {
        guard let session = worker.withLock({ $0 }) else {
            return .failed(ServiceFailure(code: -1, message: "\(file): no worker"))
        }
        if loopedSession !== session {
            // A worker an overlapping reload published: unread until now.
            if loopedSession != nil { session.resumeWatching() }
            loopedSession = session
        }
        while true {
            let event = session.next(.loop)
            // Replaced by an overlapping reload: however this worker ends, the service goes on in the new one.
            if let ended = replaced.withLock({ $0?.session === session ? $0?.ended : nil }) {
                if case .message(let message) = event {
                    guard case .stopped = message else { continue }
                }
                finishStopping(session)
                replaced.withLock { $0 = nil }
                ended.complete()
                return .continue
            }
            switch event {
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
            case .ended(let ending):
                unpublish(session)
                if let what = ending.malformed {
                    return .failed(ServiceFailure(code: -1, message: "\(file): the worker sent \(what) in svc_loop; worker \(ending.status)",
                                                  cause: .crash))
                }
                return .failed(ServiceFailure(code: ending.status.code, message: ending.hung ?? "\(file): worker \(ending.status) in svc_loop",
                                              cause: ending.hung == nil ? .crash : .watchdog))
            }
        }
    }

    override func onStop() {
        // A worker an overlapping reload replaced, whose end the loop did not see.
        if let (old, ended) = replaced.withLock({ current in defer { current = nil }; return current }) {
            old.orderStop()
            finishStopping(old)
            ended.complete()
        }
        guard let session = worker.withLock({ $0 }) else { return }
        // A worker an overlapping reload published after the old one's loop
        // had ended by itself was never told to stop.
        if loopedSession !== session { session.orderStop() }
        finishStopping(session)
    }

    /// Waits for `session`'s worker to end after its loop did (its `svc_stop`
    /// runs) and records how it ended, unless it was a clean exit.
    private func finishStopping(_ session: WorkerSession) {
        while true {
            guard case .ended(let ending) = session.next(.stop) else { continue }
            unpublish(session)
            let status = ending.status
            if let what = ending.malformed {
                record("\(file): the worker sent \(what) in svc_stop; worker \(status)", code: status.code)
            } else if ending.overranStop {
                record("\(file): svc_stop did not return within stop_timeout_ms (\(configuration.stopTimeout.milliseconds) ms); worker \(status)", code: status.code)
            } else if status != ExitStatus(.exited(0)) {
                record("\(file): worker \(status) in svc_stop", code: status.code)
            }
            return
        }
    }

    // MARK: Workers

    /// Forks a worker for `staged` and waits until its `svc_create` returned.
    /// - Parameters:
    ///   - publish: whether the worker is the service's at once (a stop is
    ///     passed on to it); an overlapping reload publishes it only once created.
    ///   - run: the run the worker is for; by default a new one (an
    ///     overlapping reload begins one that succeeds the old worker's).
    private func startWorker(_ staged: StagedPlugin, publish: Bool = true, run: KeptState.Run? = nil)
        -> Result<(version: String?, session: WorkerSession), StartFailure> {
        let run = run ?? keptState.beginRun()
        let result = launchAndCreate(staged, run: run, publish: publish)
        if case .failure = result {
            // A failed create's keeps are dropped (a refused new version's
            // state never reaches the old one): the next run reads what this one did.
            keptState.abandonRun(run)
        }
        return result
    }

    private func launchAndCreate(_ staged: StagedPlugin, run: KeptState.Run, publish: Bool)
        -> Result<(version: String?, session: WorkerSession), StartFailure> {
        let session: WorkerSession
        do {
            session = WorkerSession(launched: try launcher.launch(), launcher: launcher,
                                    settings: .init(file: file, stopTimeout: configuration.stopTimeout,
                                                    startTimeout: configuration.startTimeout, watchdog: configuration.watchdog),
                                    logger: logger, keptState: keptState, run: run)
        } catch {
            return .failure(StartFailure(failure: ServiceFailure(code: -1, message: "\(file): \(error)"), isLoadError: false,
                                         reloadReason: nil))
        }
        logger.debug("worker \(session.pid) loads \(file)")
        // The assignment goes first: the stop observer may send `.stop` as
        // soon as the worker is published, and a worker expects `.start` first.
        let sent = session.channel.send(.start(WorkerAssignment(
            name: name, file: file, privateCopy: staged.privateCopy, containsSwiftCode: staged.containsSwiftCode,
            interval: configuration.interval, watchdog: configuration.watchdog, startTimeout: configuration.startTimeout,
            settings: configuration.settings)), until: .now + configuration.stopTimeout)
        guard sent.succeeded else {
            let status = session.abandon()
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
        // What the service kept follows its assignment, before anything else:
        // its descriptors, then its bytes.
        let deadline = ContinuousClock.now + configuration.stopTimeout
        do throws(Errno) {
            for name in run.descriptorNames {
                guard let descriptor = run.keptDescriptor(named: name) else { continue }
                try session.channel.send(.keptDescriptor(name: name), passing: descriptor, until: deadline)
            }
            if let bytes = run.state, bytes.count > 0 {
                let message = WorkerMessage.keptState(size: UInt64(bytes.count))
                if let sealed = run.sealedState {
                    // What a worker saved goes on as it came.
                    try session.channel.send(message, passing: sealed, until: deadline)
                } else {
                    try session.channel.send(message, withSealedCopyOf: bytes, until: deadline)
                }
            } else if !session.channel.send(.keptState(size: 0), until: deadline).succeeded {
                throw Errno(ETIMEDOUT)
            }
        } catch {
            let status = session.abandon()
            return .failure(StartFailure(failure: ServiceFailure(
                code: -1, message: "\(file): service '\(name)': cannot hand the worker what it kept: \(error); worker \(status)"),
                isLoadError: false, reloadReason: nil))
        }
        if publish {
            worker.withLock { $0 = session }
            // A stop ordered before the worker was published could not be passed on.
            if stopSignal.request == .ordered { session.orderStop() }
        }
        var version: String?
        while true {
            switch session.next(.create) {
            case .message(.loaded(let loaded)):
                version = loaded
            case .message(.created):
                return .success((version, session))
            case .message(.loadFailed(let code, let reason)):
                _ = session.reap()
                unpublish(session)
                let error = PluginError(PluginError.Code(named: code) ?? .loadFailed, file: file, reason: reason)
                return .failure(StartFailure(failure: ServiceFailure(code: -1, message: error.description), isLoadError: true,
                                             reloadReason: error.reason))
            case .message(.createFailed(let code)):
                _ = session.reap()
                unpublish(session)
                return .failure(StartFailure(
                    failure: ServiceFailure(code: code, message: "\(file): svc_create returned \(code)"), isLoadError: false,
                    reloadReason: "svc_create of the new version \(version ?? "(no version)") returned \(code)"))
            case .message:
                continue
            case .ended(let ending):
                unpublish(session)
                let status = ending.status
                if let what = ending.malformed {
                    return .failure(StartFailure(
                        failure: ServiceFailure(code: -1, message: "\(file): the worker sent \(what) in svc_create; worker \(status)", cause: .crash),
                        isLoadError: false, reloadReason: "the new version's worker sent \(what)"))
                }
                return .failure(StartFailure(
                    failure: ServiceFailure(code: status.code, message: ending.hung ?? "\(file): worker \(status) in svc_create",
                                           cause: ending.hung == nil ? .crash : .watchdog),
                    isLoadError: false,
                    reloadReason: ending.killedForStop ? nil : ending.cause ?? "the new version's worker \(status) in svc_create"))
            }
        }
    }

    /// Forgets a worker that ended; what it saved is all read (its socket's end came after).
    private func unpublish(_ session: WorkerSession) {
        if let run = session.run { keptState.endRun(run) }
        worker.withLock {
            guard $0 === session else { return }
            loopsOfEndedRuns.store(loopsOfEndedRuns.value &+ session.loops.value)
            $0 = nil
        }
    }

    /// The loop turns of every run: the host's own loop only waits for the worker's.
    override var loopsCompleted: UInt64 {
        worker.withLock { loopsOfEndedRuns.value &+ ($0?.loops.value ?? 0) }
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
            versions.reject(changed, reason: error.reason, as: .refused, for: self, logger: logger)
            return (current, nil)
        }
    }
}

extension IsolatedPluginService: OverlappingReload {
    func reloadOverlapping() -> OverlapOutcome {
        guard currentState == .started, let old = worker.withLock({ $0 }), replaced.withLock({ $0 == nil }) else { return .notRunning }
        let (_, candidate) = stagedToTry()
        guard let candidate else { return .kept }
        // The old worker may have ended (or the service restarted) during the scan.
        guard let oldRun = old.run, let run = keptState.beginRun(succeeding: oldRun) else { return .notRunning }
        switch startWorker(candidate, publish: false, run: run) {
        case .failure(let failure):
            if let reason = failure.reloadReason {
                versions.reject(candidate.identity, reason: reason, as: failure.isLoadError ? .refused : .rolledBack,
                                for: self, logger: logger)
            }
            return .kept
        case .success(let (version, session)):
            let ended = Completion()
            let took = worker.withLock { current in
                // Any stop at all (ordered, or the service's own) and the old run is ending anyway.
                guard current === old, stopSignal.request == .none else { return false }
                loopsOfEndedRuns.store(loopsOfEndedRuns.value &+ old.loops.value)
                current = session
                replaced.withLock { $0 = (old, ended) }
                keptState.retire(oldRun)
                return true
            }
            guard took else {
                // Stopped meanwhile: the new worker goes, its keeps with it.
                session.orderStop()
                finishStopping(session)
                keptState.abandonRun(run)
                return .notRunning
            }
            old.orderStop()
            adopt(candidate, version: version)
            // The old worker's loop call returns on the stop, then its svc_stop runs.
            if !ended.waitBlocking(timeout: configuration.stopTimeout * 2) {
                logger.warning("\(file): the old version's worker has not ended within twice stop_timeout_ms (\(configuration.stopTimeout.milliseconds) ms) of the handover")
            }
            return .replaced
        }
    }
}
