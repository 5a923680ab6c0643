import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The ``BaseService`` adapter around a plugin file: its create, loop and
/// stop steps call the plugin's `svc_create`, `svc_loop` and `svc_stop`.
///
/// Every start checks the file; when it changed since the image in use was
/// loaded, the new file is loaded and created instead (hot reload). If that
/// fails, at load or at `svc_create`, the service rolls back to the image that
/// worked, and the changed file is not tried again until it changes again.
final class PluginService: BaseService, HostCallbackTarget, @unchecked Sendable {
    let file: String
    private let loader: PluginLoader
    private let logger: Logger
    private let versions: PluginVersions<PluginImage>
    /// One binding; two with `reload = "overlap"`, so that an overlapping
    /// reload creates the new version with its own callbacks (and run) while
    /// the old one still calls its own.
    private var bindings: [HostBinding] = []
    /// What the plugin keeps across its runs and versions (`state_save`, `fd_keep`).
    let keptState: KeptState
    /// Touched only on the service's own thread (create, loop, stop).
    private var instance: PluginInstance? {
        didSet { loopCall = instance?.loopCall }
    }
    /// `instance`'s loop call, read on every loop turn. Only the service's
    /// own thread touches it, so the dynamic exclusivity check is skipped.
    @exclusivity(unchecked) private var loopCall: LoopCall?

    /// A new version created beside the running one, waiting for the
    /// service's thread to take it over (``reloadOverlapping()``).
    private struct Handover {
        let instance: PluginInstance
        let image: PluginImage
        let run: KeptState.Run
        let binding: Int
        let taken = Completion()
    }

    private enum Phase {
        /// No run, or one being created or stopped.
        case idle
        /// A run on `binding` is in its loop.
        case running(run: KeptState.Run, binding: Int)
        /// A new version waits to take over from the run on `binding`.
        case handingOver(run: KeptState.Run, binding: Int, Handover)
        /// The new version took over; the old one's `svc_stop` runs (no
        /// overlapping reload may reuse its binding yet).
        case retiring
    }

    private let phase = Mutex(Phase.idle)

    /// Loads `file` now, so that a file that cannot be used is reported when
    /// the service is added rather than at its first start.
    /// - Parameters:
    ///   - staged: `file` already staged (see ``Prefetcher``); by default it is staged here.
    ///   - keptState: what an earlier service of the same name kept (its sidecar changed).
    init(name: String, file: String, configuration: ServiceConfiguration, loader: PluginLoader, logger: Logger,
         staged: StagedPlugin? = nil, keptState: KeptState = KeptState()) throws(PluginError) {
        let staged = if let staged { staged } else { try loader.stage(file: file, scanTimeout: configuration.startTimeout) }
        let image = try PluginLoader.open(staged)
        self.file = file
        self.loader = loader
        self.keptState = keptState
        var logger = logger
        logger[metadataKey: "service"] = "\(name)"
        self.logger = logger
        versions = PluginVersions(file: file, current: image, name: image.version)
        super.init(name: name, configuration: configuration)
        // The second only for a service whose reloads overlap: each costs libffi closures.
        for slot in 0..<(configuration.reload == .overlap ? StopSignal.slots : 1) {
            guard let binding = HostBinding(serviceName: name, settings: configuration.settings, target: self,
                                            offersState: true, slot: slot) else {
                throw PluginError(.loadFailed, file: file, reason: HostBinding.allocationFailure)
            }
            bindings.append(binding)
        }
        updateMetadata {
            $0.pluginFile = file
            $0.pluginVersion = image.version
        }
    }

    /// Whether the file differs from the image in use and has not been refused already.
    var fileChanged: Bool { versions.fileChanged }
    var sha256: String? { versions.current.staged.sha256 }

    // MARK: Steps

    override func onCreate() throws(ServiceFailure) {
        let (current, candidate) = imageToTry()
        // The binding of the last run; an overlapping reload may have moved it.
        let slot = activeBinding
        if let candidate {
            switch create(candidate, on: slot)! {
            case .success(let (created, run)):
                instance = created
                phase.withLock { $0 = .running(run: run, binding: slot) }
                adopt(candidate)
                return
            case .failure(let failure):
                versions.reject(candidate.identity, reason: "svc_create of the new version \(candidate.versionDescription) returned \(failure.code)",
                                as: .rolledBack, for: self, logger: logger)
            }
        }
        switch create(current, on: slot)! {
        case .success(let (created, run)):
            instance = created
            phase.withLock { $0 = .running(run: run, binding: slot) }
        case .failure(let failure):
            throw ServiceFailure(code: failure.code, message: "\(file): svc_create returned \(failure.code)")
        }
    }

    /// The binding the service's runs use until an overlapping reload moves
    /// them to the other; only the service's thread touches it.
    private var activeBinding = 0

    /// Calls `svc_create` of `image` in a new run on binding `slot` (one that
    /// succeeds `previous`, in an overlapping reload); a failed create's
    /// keeps are dropped (the next run reads what this one did). `nil` when
    /// `previous` is no longer the newest run.
    private func create(_ image: PluginImage, on slot: Int, succeeding previous: KeptState.Run? = nil)
        -> Result<(PluginInstance, KeptState.Run), PluginInstance.CreateFailure>? {
        // Plugin code (constructors, svc_create) may have replaced the host's
        // SIGINT/SIGTERM/SIGHUP/SIGPIPE handlers; put them back.
        defer {
            if HostSignals.reassert() > 0 {
                logger.warning("\(file) replaced the host's signal handlers; they are restored")
            }
        }
        let run: KeptState.Run
        if let previous {
            guard let succeeding = keptState.beginRun(succeeding: previous) else { return nil }
            run = succeeding
        } else {
            run = keptState.beginRun()
        }
        bindings[slot].run.withLock { $0 = run }
        switch PluginInstance.create(image: image, binding: bindings[slot]) {
        case .success(let created):
            return .success((created, run))
        case .failure(let failure):
            keptState.abandonRun(run)
            return .failure(failure)
        }
    }

    /// Makes `image` the version in use, and says so.
    private func adopt(_ image: PluginImage) {
        versions.adopt(image, name: image.version, for: self, logger: logger)
    }

    override func onLoop() -> LoopOutcome {
        // One atomic load: a new version waits to take over.
        if stopSignal.request == .handover { takeOver() }
        let result = loopCall.unsafelyUnwrapped()
        // The common case first, without building anything.
        if result == 0 { return .continue }
        // An old version that ends its run (SVC_DONE, an error) on the
        // handover's stop_requested() hands over all the same.
        if stopSignal.request == .handover, takeOver() { return .continue }
        return LoopOutcome(pluginResult: result, file: file)
    }

    override func onStop() {
        let (run, waiting) = phase.withLock { phase -> (KeptState.Run?, Handover?) in
            defer { phase = .idle }
            switch phase {
            case .idle, .retiring: return (nil, nil)
            case .running(let run, _): return (run, nil)
            case .handingOver(let run, _, let handover): return (run, handover)
            }
        }
        instance?.stop()
        instance = nil
        if let run { keptState.endRun(run) }
        // Stopped before it took over: the new version goes too, and its keeps with it.
        if let waiting {
            waiting.instance.stop()
            keptState.abandonRun(waiting.run)
            waiting.taken.complete()
        }
    }

    /// On the service's thread, between two loop turns: the old version's
    /// `svc_stop` runs (its keeps refused from now on), then the new
    /// version's loop turns follow. Whether a new version took over.
    @discardableResult
    private func takeOver() -> Bool {
        let taking: (old: KeptState.Run, handover: Handover)? = phase.withLock { phase in
            guard case .handingOver(let old, _, let handover) = phase else { return nil }
            phase = .retiring
            keptState.retire(old)
            return (old, handover)
        }
        guard let (old, handover) = taking else { return false }
        // The old version's svc_stop is not a loop call: watchdog_ms does not
        // time it (the reload waits for it as long as for a stop), and times
        // the new version's loop call from its own start.
        let watched = callClock?.loopLimit != nil ? callClock : nil
        watched?.loopEnds()
        defer { watched?.loopBegins() }
        // The old version still sees its stop (stop_requested, the descriptor)
        // until its svc_stop returned: threads it joins there may wait for it.
        instance?.stop()
        keptState.endRun(old)
        instance = handover.instance
        activeBinding = handover.binding
        // Cleared under the lock that raised it, as the new run begins: a next
        // overlapping reload raises its own only once the phase says running.
        phase.withLock { phase in
            phase = .running(run: handover.run, binding: handover.binding)
            bindings[1 - handover.binding].handingOver.store(false, ordering: .releasing)
            stopSignal.clearHandover()
        }
        adopt(handover.image)
        handover.taken.complete()
        return true
    }

    // MARK: Reload

    /// The image in use, and a newly loaded one to try first when the file changed.
    private func imageToTry() -> (current: PluginImage, candidate: PluginImage?) {
        let current = versions.current
        guard let changed = versions.changedFile(logger: logger) else { return (current, nil) }
        do {
            return (current, try loader.load(file: file, scanTimeout: configuration.startTimeout))
        } catch {
            versions.reject(changed, reason: error.reason, as: .refused, for: self, logger: logger)
            return (current, nil)
        }
    }

    // MARK: HostCallbackTarget

    func pluginLog(level: Int32, message: String) {
        logger.pluginLine(level: level, message)
    }

    func pluginRequestedStop() {
        requestStop()
    }

    func pluginSavesState(_ bytes: UnsafeRawPointer?, count: Int, in run: KeptState.Run?) -> Int32 {
        guard let run else { return -ESTALE }
        return keptState.save(bytes, count: count, by: run)
    }

    func pluginLoadsState(in run: KeptState.Run?) -> UnsafeRawBufferPointer? {
        run?.state
    }

    func pluginKeepsDescriptor(_ descriptor: Int32, named name: String?, in run: KeptState.Run?) -> Int32 {
        guard let run else { return -ESTALE }
        let code = keptState.keep(descriptor, named: name ?? "", by: run)
        if code != 0, code != -EBADF, run.logsRefusal(code) {
            logger.warning("\(file): \(KeptState.refusal(of: name ?? "", code: code))")
        }
        return code
    }

    func pluginLoadsDescriptor(named name: String?, in run: KeptState.Run?) -> Int32 {
        guard let run, let name else { return -ENOENT }
        return run.loadDescriptor(named: name)
    }
}

extension PluginService: OverlappingReload {
    func reloadOverlapping() -> OverlapOutcome {
        guard case .running(let old, let slot)? = phase.withLock({ phase -> Phase? in
            if case .running = phase { return phase }
            return nil
        }) else { return .notRunning }
        guard bindings.count == 2 else { return .notRunning }
        let (_, candidate) = imageToTry()
        guard let candidate else { return .kept }
        let next = 1 - slot
        switch create(candidate, on: next, succeeding: old) {
        case nil:
            // The run it was to succeed ended meanwhile: a plain restart does.
            return .notRunning
        case .failure(let failure)?:
            versions.reject(candidate.identity, reason: "svc_create of the new version \(candidate.versionDescription) returned \(failure.code)",
                            as: .rolledBack, for: self, logger: logger)
            return .kept
        case .success(let (created, run))?:
            let handover = Handover(instance: created, image: candidate, run: run, binding: next)
            let waiting = phase.withLock { phase in
                guard case .running(let current, _) = phase, current === old else { return false }
                phase = .handingOver(run: old, binding: slot, handover)
                // Only the old version's stop_requested() answers yes to it, and only its stop descriptor is readable.
                bindings[slot].handingOver.store(true, ordering: .releasing)
                stopSignal.raiseHandover(slot: slot)
                return true
            }
            guard waiting else {
                // The old run ended meanwhile: the new version goes, its keeps with it.
                created.stop()
                keptState.abandonRun(run)
                return .notRunning
            }
            // The old version's loop call has to return; it has as long as a stop would.
            if !handover.taken.waitBlocking(timeout: configuration.stopTimeout + configuration.interval) {
                logger.warning("\(file): the old version's svc_loop has not returned within stop_timeout_ms (\(configuration.stopTimeout.milliseconds) ms) of the handover; the new version takes over when it does")
            }
            return .replaced
        }
    }
}
extension Logger {
    /// Logs a line a plugin wrote through `svc_host.log`, at the level it asked for.
    func pluginLine(level: Int32, _ message: String) {
        let logLevel: Logger.Level = switch level {
        case 0: .debug
        case 1: .info
        case 2: .warning
        default: .error
        }
        // A worker cuts its messages at WorkerMessage.logLimit bytes (a cut
        // character decodes as U+FFFD, hence the margin); lines as long in
        // thread isolation are cut the same, so that no log line is unbounded.
        if message.utf8.count >= WorkerMessage.logLimit - 3 {
            let kept = String(decoding: message.utf8.prefix(WorkerMessage.logLimit - 3), as: UTF8.self)
            log(level: logLevel, "\(PluginText.escaped(kept))… [truncated at \(WorkerMessage.logLimit / 1024) KiB]",
                metadata: ["origin": "plugin"])
            return
        }
        log(level: logLevel, "\(PluginText.escaped(message))", metadata: ["origin": "plugin"])
    }
}

/// A service backed by a plugin file, which a restart reloads when it changed.
protocol ReloadableService: BaseService {
    var file: String { get }
    /// Whether the file differs from the version in use and has not been refused already.
    var fileChanged: Bool { get }
    /// The SHA-256 of the version in use, in hex.
    var sha256: String? { get }
    /// What it keeps across runs (`state_save`, `fd_keep`).
    var keptState: KeptState { get }
}

extension PluginService: ReloadableService {}
extension IsolatedPluginService: ReloadableService {}
