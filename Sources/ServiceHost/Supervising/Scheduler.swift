import Foundation
import Logging

/// The one way to reach the host's ``ServiceManager``: add services and
/// plugins, start, stop and restart them, switch recovery, and read their
/// states and metadata.
public final class Scheduler: Sendable {
    /// How the scheduler runs its services.
    public struct Configuration: Sendable {
        /// Restart services that stop on their own (the default restart policy
        /// becomes `always`; with recovery off it is `never`). Default `true`.
        public var recovery: Bool
        /// Where the private runtime directory for plugin copies is made;
        /// `nil` (the default) uses `$XDG_RUNTIME_DIR` or the temporary directory.
        public var runtimeParent: String?
        /// Where plugins run when their sidecar does not say. Default ``Isolation/thread``.
        public var isolation: Isolation
        /// The `servicehost` executable that makes worker processes for
        /// ``Isolation/process``. Default: this process's executable when it is
        /// `servicehost`; a program that embeds the host must name it.
        public var workerExecutable: String?
        /// Load plugins and sidecars that others than the host's user could
        /// have written (see the README's "Loading safety"). Default `false`.
        public var allowInsecurePlugins: Bool
        /// How a user retries a failed service, as messages say it (for
        /// example "it stays stopped until retried (call retryFailed())").
        /// Default "call retryFailed()"; `servicehost run` says "send SIGHUP".
        public var retryHint: String = "call retryFailed()"

        public init(recovery: Bool = true, runtimeParent: String? = nil, isolation: Isolation = .thread,
                    workerExecutable: String? = nil, allowInsecurePlugins: Bool = false) {
            self.recovery = recovery
            self.runtimeParent = runtimeParent
            self.isolation = isolation
            self.workerExecutable = workerExecutable ?? Self.currentExecutableIfServiceHost()
            self.allowInsecurePlugins = allowInsecurePlugins
        }

        private static func currentExecutableIfServiceHost() -> String? {
            guard let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
                  path.hasSuffix("/servicehost") else { return nil }
            return path
        }
    }

    private let manager: ServiceManager
    private let loader: PluginLoader
    private let logger: Logger
    private let configuration: Configuration
    /// Started on first use: most hosts never run a process-isolated service.
    private let launcher: WorkerLauncher?

    /// - Throws: ``PluginError`` when the runtime directory cannot be made.
    public init(configuration: Configuration = .init(), logger: Logger) throws {
        self.logger = logger
        self.configuration = configuration
        manager = ServiceManager(recovery: configuration.recovery, retryHint: configuration.retryHint, logger: logger)
        loader = PluginLoader(runtimeDirectory: try RuntimeDirectory(parent: configuration.runtimeParent),
                              checksSafety: !configuration.allowInsecurePlugins)
        launcher = configuration.workerExecutable.map { WorkerLauncher(executable: $0) }
    }

    /// Releasing a scheduler without ``shutdown()`` orders every service to
    /// stop, without waiting for them: nothing would supervise them any more.
    /// The runtime directory goes at once: loaded images stay mapped.
    deinit {
        manager.orderAllToStop()
        loader.runtimeDirectory.remove()
    }

    /// The private directory that holds the copies of loaded plugins.
    public var runtimeDirectory: String { loader.runtimeDirectory.path }

    // MARK: Adding services

    /// Adds a native service. It is started by ``start(_:)`` or ``startAll()``.
    public func add(_ service: BaseService) throws(ServiceError) {
        try manager.add(service)
    }

    /// Loads a plugin file and adds it as a service.
    /// - Parameters:
    ///   - name: the service's name; by default derived from the file name.
    ///   - configuration: by default read from the sidecar `<name>.toml` beside the file, if any.
    /// - Returns: the service's name.
    @discardableResult
    public func addPlugin(file: String, name: String? = nil, configuration: ServiceConfiguration? = nil) throws(PluginError) -> String {
        let fileName = file.split(separator: "/").last.map(String.init) ?? file
        guard let name = name ?? PluginDirectory.serviceName(forFileName: fileName) else {
            throw PluginError(.notSharedObject, file: file, reason: "is not named like a plugin (NAME.so or libNAME.so)")
        }
        let configuration = if let configuration { configuration } else { try sidecarConfiguration(for: file, name: name) }
        let service: BaseService
        switch configuration.isolation ?? self.configuration.isolation {
        case .process:
            guard let launcher else {
                throw PluginError(.loadFailed, file: file, reason: "process isolation needs the servicehost executable to fork workers from (Scheduler.Configuration.workerExecutable)")
            }
            service = try IsolatedPluginService(name: name, file: file, configuration: configuration, loader: loader,
                                                launcher: launcher, logger: logger)
        default:
            service = try PluginService(name: name, file: file, configuration: configuration, loader: loader, logger: logger)
        }
        do {
            try manager.add(service)
        } catch {
            throw PluginError(.duplicateName, file: file, reason: error.reason)
        }
        return name
    }

    /// Adds every plugin in `directory`. A file that cannot be used is logged
    /// with its reason and skipped; the others are added.
    /// - Returns: the errors, one per file that was skipped.
    /// - Throws: when the directory itself is missing or unreadable.
    @discardableResult
    public func addPlugins(directory: String) throws(PluginError) -> [PluginError] {
        try addPlugins(in: directory, skippingKnown: false).errors
    }

    /// Adds and starts the plugins in `directory` that are not services yet:
    /// files dropped in since, or fixed since they were refused (what `SIGHUP`
    /// does after restarting changed files).
    /// - Returns: the names of the services added, and one error per file refused.
    @discardableResult
    public func startNewPlugins(directory: String) throws(PluginError) -> (started: [String], errors: [PluginError]) {
        let (added, errors) = try addPlugins(in: directory, skippingKnown: true)
        for name in added {
            do {
                try start(name)
            } catch {
                logger.error("\(error.reason)", metadata: ["service": "\(name)"])
            }
        }
        return (added, errors)
    }

    private func addPlugins(in directory: String, skippingKnown: Bool) throws(PluginError) -> (added: [String], errors: [PluginError]) {
        if !configuration.allowInsecurePlugins {
            try FileSafety.check(directory, as: .directory)
        }
        let (entries, scanErrors) = try PluginDirectory(path: directory).scan()
        var errors = scanErrors
        var added: [String] = []
        for entry in entries {
            if skippingKnown, let known = manager.service(named: entry.name) {
                if let plugin = known as? any ReloadableService, plugin.file != entry.file {
                    errors.append(PluginError(.duplicateName, file: entry.file,
                                              reason: "service name '\(entry.name)' is already used by \(plugin.file); this file is ignored"))
                }
                continue
            }
            do {
                var configuration = ServiceConfiguration()
                if let sidecar = entry.sidecar { configuration = try loadSidecar(sidecar) }
                added.append(try addPlugin(file: entry.file, name: entry.name, configuration: configuration))
            } catch {
                errors.append(error)
            }
        }
        for error in errors {
            logger.error("\(error)", metadata: ["file": "\(error.file)", "code": "\(error.code)"])
        }
        return (added, errors)
    }

    private func sidecarConfiguration(for file: String, name: String) throws(PluginError) -> ServiceConfiguration {
        let directory = file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : "."
        let sidecar = "\(directory)/\(name).toml"
        guard case .success = FileIdentity.of(path: sidecar) else { return ServiceConfiguration() }
        return try loadSidecar(sidecar)
    }

    private func loadSidecar(_ path: String) throws(PluginError) -> ServiceConfiguration {
        if !configuration.allowInsecurePlugins {
            try FileSafety.check(path, as: .sidecar)
        }
        return try SidecarFile.load(path: path)
    }

    // MARK: Orders

    /// Starts a stopped or new service; clears its failed mark and restart count.
    public func start(_ name: String) throws(ServiceError) { try manager.start(name) }

    /// Starts every service that is not running.
    public func startAll() { manager.startAll() }

    /// Stops a service and returns once its stop step has run. No restart follows.
    public func stop(_ name: String) async throws(ServiceError) { try await manager.stop(name) }

    /// Stops a service and starts it again, picking up a changed plugin file.
    public func restart(_ name: String) async throws(ServiceError) { try await manager.restart(name) }

    /// Stops a service and forgets it.
    public func remove(_ name: String) async throws(ServiceError) { try await manager.remove(name) }

    /// Restarts every plugin service whose file changed since its image was
    /// loaded (what `SIGHUP` does); the others keep running.
    /// - Returns: the names of the services restarted.
    @discardableResult
    public func restartChanged() async -> [String] {
        var restarted: [String] = []
        for case let service as any ReloadableService in manager.services where service.fileChanged {
            logger.notice("\(service.file) changed; restarting", metadata: ["service": "\(service.name)"])
            do {
                try await manager.restart(service.name)
                restarted.append(service.name)
            } catch {
                logger.error("\(error)", metadata: ["service": "\(service.name)"])
            }
        }
        return restarted
    }

    /// Starts again, once each, the services that gave up (their restarts
    /// used up, their restart limit reached, their plugin unloadable); what
    /// `SIGHUP` does after restarting changed files.
    /// - Returns: the names of the services started.
    @discardableResult
    public func retryFailed() -> [String] {
        let retried = manager.retryFailed()
        for name in retried {
            logger.notice("retrying a failed service", metadata: ["service": "\(name)"])
        }
        return retried
    }

    /// Stops every service (each stop step runs once), dependents before what
    /// they require, ends the worker processes, removes the runtime
    /// directory, and takes no more orders.
    public func shutdown() async {
        await manager.shutdown()
        launcher?.shutdown()
        loader.runtimeDirectory.remove()
    }

    // MARK: Reading state

    /// Whether services that stop on their own are restarted by default.
    public var recovery: Bool {
        get { manager.isRecoveryEnabled }
        set { manager.isRecoveryEnabled = newValue }
    }

    /// Every service's state and metadata, in the order they were added.
    public func snapshot() -> [ServiceSnapshot] {
        manager.services.map { ServiceSnapshot(name: $0.name, state: $0.currentState, metadata: $0.metadata) }
    }

    /// One service's state and metadata.
    public func snapshot(of name: String) -> ServiceSnapshot? {
        manager.service(named: name).map { ServiceSnapshot(name: $0.name, state: $0.currentState, metadata: $0.metadata) }
    }

    /// The fork server's pid, once one runs; for white-box tests.
    var forkServerPID: Int32? { launcher?.serverProcess }

    /// The service object behind a name, for white-box tests.
    func service(named name: String) -> BaseService? { manager.service(named: name) }

    /// The events of every service, until shutdown: first the most recent
    /// ones (up to 1,000) that happened before the call, so that subscribing
    /// after ``startAll()`` misses nothing, then each as it happens. After
    /// shutdown the stream ends once the past events are read.
    public func events() -> AsyncStream<ServiceEvent> { manager.events.subscribe() }

    /// The manager, for white-box tests (a released scheduler must free it).
    var managerForTesting: AnyObject { manager }
}
