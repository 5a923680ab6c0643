import Logging

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
    private var binding: HostBinding?
    /// What the plugin keeps across its runs and versions (`state_save`).
    let keptState = KeptState()
    /// Touched only on the service's own thread (create, loop, stop).
    private var instance: PluginInstance? {
        didSet { loopCall = instance?.loopCall }
    }
    /// `instance`'s loop call, read on every loop turn. Only the service's
    /// own thread touches it, so the dynamic exclusivity check is skipped.
    @exclusivity(unchecked) private var loopCall: LoopCall?

    /// Loads `file` now, so that a file that cannot be used is reported when
    /// the service is added rather than at its first start.
    /// - Parameter staged: `file` already staged (see ``Prefetcher``); by default it is staged here.
    init(name: String, file: String, configuration: ServiceConfiguration, loader: PluginLoader, logger: Logger,
         staged: StagedPlugin? = nil) throws(PluginError) {
        let staged = if let staged { staged } else { try loader.stage(file: file, scanTimeout: configuration.startTimeout) }
        let image = try PluginLoader.open(staged)
        self.file = file
        self.loader = loader
        var logger = logger
        logger[metadataKey: "service"] = "\(name)"
        self.logger = logger
        versions = PluginVersions(file: file, current: image, name: image.version)
        super.init(name: name, configuration: configuration)
        binding = HostBinding(serviceName: name, settings: configuration.settings, target: self, offersState: true)
        guard binding != nil else { throw PluginError(.loadFailed, file: file, reason: HostBinding.allocationFailure) }
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
        // Plugin code (constructors, svc_create) may have replaced the host's
        // SIGINT/SIGTERM/SIGHUP/SIGPIPE handlers; put them back.
        defer {
            if HostSignals.reassert() > 0 {
                logger.warning("\(file) replaced the host's signal handlers; they are restored")
            }
        }
        let (current, candidate) = imageToTry()
        if let candidate {
            // What the old version kept goes back to it if the new one's create fails.
            let kept = keptState.beginRun()
            switch PluginInstance.create(image: candidate, binding: binding!) {
            case .success(let created):
                instance = created
                let previous = versions.adopt(candidate, name: candidate.version)
                updateMetadata {
                    $0.pluginVersion = candidate.version
                    $0.reloadsByResult[.ok, default: 0] += 1
                }
                logger.notice("reloaded \(file): \(previous) -> \(candidate.versionDescription)",
                              metadata: LifecycleEvent.reload(.ok, from: previous, to: candidate.versionDescription).metadata())
                report(.reloaded(from: previous, to: candidate.versionDescription))
                return
            case .failure(let failure):
                keptState.abandonRun(restoring: kept)
                versions.reject(candidate.identity, reason: "svc_create of the new version \(candidate.versionDescription) returned \(failure.code)",
                                as: .rolledBack, for: self, logger: logger)
            }
        }
        let kept = keptState.beginRun()
        switch PluginInstance.create(image: current, binding: binding!) {
        case .success(let created):
            instance = created
        case .failure(let failure):
            // A failed create's saves are dropped: the next run reads what this one did.
            keptState.abandonRun(restoring: kept)
            throw ServiceFailure(code: failure.code, message: "\(file): svc_create returned \(failure.code)")
        }
    }

    override func onLoop() -> LoopOutcome {
        let result = loopCall.unsafelyUnwrapped()
        // The common case first, without building anything.
        return result == 0 ? .continue : LoopOutcome(pluginResult: result, file: file)
    }

    override func onStop() {
        instance?.stop()
        instance = nil
        keptState.endRun()
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

    func pluginSavesState(_ bytes: UnsafeRawPointer?, count: Int) -> Int32 {
        keptState.save(bytes, count: count)
    }

    func pluginLoadsState() -> UnsafeRawBufferPointer? {
        keptState.readByCurrentRun
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
}

extension PluginService: ReloadableService {}
extension IsolatedPluginService: ReloadableService {}
