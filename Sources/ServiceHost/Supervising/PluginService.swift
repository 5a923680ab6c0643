import Logging
import Synchronization

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
    /// Guards `current` and `rejected`, which SIGHUP handling reads from another thread.
    private let imageLock = Mutex<Images?>(nil)
    private var binding: HostBinding?
    /// Touched only on the service's own thread (create, loop, stop).
    private var instance: PluginInstance? {
        didSet { loopCall = instance?.loopCall }
    }
    /// `instance`'s loop call, read on every loop turn. Only the service's
    /// own thread touches it, so the dynamic exclusivity check is skipped.
    @exclusivity(unchecked) private var loopCall: LoopCall?

    private struct Images: @unchecked Sendable {
        /// The image that created successfully last (or the one loaded when the service was added).
        var current: PluginImage
        /// A changed file that failed; not tried again until the file changes again.
        var rejected: FileIdentity?
    }

    /// Loads `file` now, so that a file that cannot be used is reported when
    /// the service is added rather than at its first start.
    init(name: String, file: String, configuration: ServiceConfiguration, loader: PluginLoader, logger: Logger) throws(PluginError) {
        let image = try loader.load(file: file)
        self.file = file
        self.loader = loader
        var logger = logger
        logger[metadataKey: "service"] = "\(name)"
        self.logger = logger
        super.init(name: name, configuration: configuration)
        imageLock.withLock { $0 = Images(current: image) }
        binding = HostBinding(serviceName: name, settings: configuration.settings, target: self)
        updateMetadata {
            $0.pluginFile = file
            $0.pluginVersion = image.version
        }
    }

    /// Whether the file differs from the image in use and has not been refused already.
    var fileChanged: Bool {
        guard case .success(let identity) = FileIdentity.of(path: file) else { return false }
        return imageLock.withLock { images in
            guard let images else { return false }
            return identity != images.current.identity && identity != images.rejected
        }
    }

    // MARK: Steps

    override func onCreate() throws(ServiceFailure) {
        let (current, candidate) = imageToTry()
        if let candidate {
            switch PluginInstance.create(image: candidate, binding: binding!) {
            case .success(let created):
                instance = created
                imageLock.withLock { $0!.current = candidate }
                updateMetadata { $0.pluginVersion = candidate.version }
                logger.notice("reloaded \(file): \(current.versionDescription) -> \(candidate.versionDescription)")
                report(.reloaded(from: current.versionDescription, to: candidate.versionDescription))
                return
            case .failure(let failure):
                reject(candidate.identity, reason: "svc_create of the new version \(candidate.versionDescription) returned \(failure.code)", keeping: current)
            }
        }
        switch PluginInstance.create(image: current, binding: binding!) {
        case .success(let created):
            instance = created
        case .failure(let failure):
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
    }

    // MARK: Reload

    /// The image in use, and a newly loaded one to try first when the file changed.
    private func imageToTry() -> (current: PluginImage, candidate: PluginImage?) {
        let (current, rejected) = imageLock.withLock { ($0!.current, $0!.rejected) }
        let identity: FileIdentity
        switch FileIdentity.of(path: file) {
        case .success(let found):
            identity = found
        case .failure(let error):
            logger.warning("\(file): cannot be examined (\(error)); keeping version \(current.versionDescription)")
            return (current, nil)
        }
        guard identity != current.identity, identity != rejected else { return (current, nil) }
        do {
            return (current, try loader.load(file: file))
        } catch {
            reject(identity, reason: error.reason, keeping: current)
            return (current, nil)
        }
    }

    private func reject(_ identity: FileIdentity, reason: String, keeping current: PluginImage) {
        imageLock.withLock { $0!.rejected = identity }
        let message = "reload of \(file) failed: \(reason); keeping version \(current.versionDescription)"
        logger.error("\(message)")
        updateMetadata { $0.record(ServiceFailure(code: -1, message: message)) }
        report(.reloadRejected(reason: reason))
    }

    // MARK: HostCallbackTarget

    func pluginLog(level: Int32, message: String) {
        logger.pluginLine(level: level, message)
    }

    func pluginRequestedStop() {
        requestStop()
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
        log(level: logLevel, "\(message)", metadata: ["origin": "plugin"])
    }
}

/// A service backed by a plugin file, which a restart reloads when it changed.
protocol ReloadableService: BaseService {
    var file: String { get }
    /// Whether the file differs from the version in use and has not been refused already.
    var fileChanged: Bool { get }
}

extension PluginService: ReloadableService {}
extension IsolatedPluginService: ReloadableService {}
