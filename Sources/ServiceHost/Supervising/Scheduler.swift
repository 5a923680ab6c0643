import Foundation
import Logging
import Synchronization

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
        /// Bounds on plugin files (see ``Limits``). Default ``Limits/default``.
        public var limits: Limits
        /// How a user retries a failed service, as messages say it (for
        /// example "it stays stopped until retried (call retryFailed())").
        /// Default "call retryFailed()"; `servicehost run` says "send SIGHUP".
        public var retryHint: String = "call retryFailed()"

        public init(recovery: Bool = true, runtimeParent: String? = nil, isolation: Isolation = .thread,
                    workerExecutable: String? = nil, allowInsecurePlugins: Bool = false, limits: Limits = .default) {
            self.limits = limits
            self.recovery = recovery
            self.runtimeParent = runtimeParent
            self.isolation = isolation
            self.workerExecutable = workerExecutable ?? Self.currentExecutableIfServiceHost()
            self.allowInsecurePlugins = allowInsecurePlugins
        }

        /// This process's own image when it is `servicehost`, else `nil`.
        static func currentExecutableIfServiceHost() -> String? {
            guard let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"),
                  path.hasSuffix("/servicehost") else { return nil }
            // The running image itself, not the path it came from: an upgrade
            // may have replaced that file by the time the fork server starts.
            return "/proc/self/exe"
        }
    }

    private let manager: ServiceManager
    private let loader: PluginLoader
    private let logger: Logger
    private let configuration: Configuration
    /// Each relative plugins directory named so far, made absolute when first
    /// named, so that a plugin calling `chdir` cannot move it.
    private let resolvedDirectories = Mutex<[String: String]>([:])
    /// The warnings (each names its file) about stray sidecars, by each directory's last scan.
    private let reportedStraySidecars = Mutex<[String: Set<String>]>([:])
    /// Started on first use: most hosts never run a process-isolated service.
    private let launcher: WorkerLauncher?
    /// One reload at a time (SIGHUP, the control API, a file watcher).
    private let reloads = AsyncLock()

    /// - Throws: ``PluginError`` when the runtime directory cannot be made.
    public init(configuration: Configuration = .init(), logger: Logger) throws {
        self.logger = logger
        self.configuration = configuration
        manager = ServiceManager(recovery: configuration.recovery, retryHint: configuration.retryHint, logger: logger)
        let launcher = configuration.workerExecutable.map { WorkerLauncher(executable: $0, logger: logger) }
        loader = PluginLoader(runtimeDirectory: try RuntimeDirectory(parent: configuration.runtimeParent),
                              checksSafety: !configuration.allowInsecurePlugins,
                              maxPluginSize: configuration.limits.maxPluginSize,
                              scanner: launcher.map { PluginScanner(launcher: $0) })
        self.launcher = launcher
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
        if let problem = service.configuration.problem {
            throw ServiceError(.invalidConfiguration, service: service.name, reason: problem)
        }
        try manager.add(service)
    }

    /// Loads a plugin file and adds it as a service.
    /// - Parameters:
    ///   - name: the service's name; by default derived from the file name.
    ///   - configuration: by default read from the sidecar `<name>.toml` beside the file, if any.
    /// - Returns: the service's name.
    @discardableResult
    public func addPlugin(file: String, name: String? = nil, configuration: ServiceConfiguration? = nil) throws(PluginError) -> String {
        try addPlugin(file: file, name: name, configuration: configuration, staged: nil)
    }

    /// ``addPlugin(file:name:configuration:)`` for async callers: the plugin's
    /// load-time scan (up to its `start_timeout_ms`) runs on a thread of its own.
    @discardableResult
    public func addPlugin(file: String, name: String? = nil, configuration: ServiceConfiguration? = nil) async throws(PluginError) -> String {
        try await offTheCooperativePool(file) { () throws(PluginError) in
            try self.addPlugin(file: file, name: name, configuration: configuration, staged: nil)
        }
    }

    /// ``addPlugin(file:name:configuration:)`` with the file already staged, or not (`nil`).
    /// - Parameter keptState: what the service of the same name kept before
    ///   it was replaced (a changed sidecar); by default, nothing.
    private func addPlugin(file: String, name: String?, configuration: ServiceConfiguration?,
                           staged: StagedPlugin?, keptState: KeptState = KeptState()) throws(PluginError) -> String {
        try refuseAfterShutdown(file)
        let fileName = file.split(separator: "/").last.map(String.init) ?? file
        guard let name = name ?? PluginDirectory.serviceName(forFileName: fileName) else {
            throw PluginError(.notSharedObject, file: file, reason: "is not named like a plugin (NAME.so or libNAME.so)")
        }
        let configuration = if let configuration { configuration } else { try sidecarConfiguration(for: file, name: name) }
        if let problem = configuration.problem {
            throw PluginError(.invalidConfiguration, file: file, reason: problem)
        }
        let service: BaseService
        switch configuration.isolation ?? self.configuration.isolation {
        case .process:
            guard let launcher else {
                throw PluginError(.loadFailed, file: file, reason: "process isolation needs the servicehost executable to fork workers from (Scheduler.Configuration.workerExecutable)")
            }
            service = try IsolatedPluginService(name: name, file: file, configuration: configuration, loader: loader,
                                                launcher: launcher, logger: logger, staged: staged, keptState: keptState)
        default:
            service = try PluginService(name: name, file: file, configuration: configuration, loader: loader, logger: logger,
                                        staged: staged, keptState: keptState)
        }
        do {
            try manager.add(service)
        } catch {
            // A name taken, or a scheduler shut down meanwhile (a SIGHUP reload racing a SIGTERM).
            throw PluginError(error.code == .duplicateService ? .duplicateName : .loadFailed, file: file, reason: error.reason)
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

    /// ``addPlugins(directory:)`` for async callers: the blocking part (each
    /// new plugin's load-time scan may take up to its `start_timeout_ms`) runs
    /// on a thread of its own, so that Swift's cooperative pool, which has only
    /// as many threads as cores, keeps serving other tasks meanwhile.
    @discardableResult
    public func addPlugins(directory: String) async throws(PluginError) -> [PluginError] {
        try await offTheCooperativePool(directory) { () throws(PluginError) in
            try self.addPlugins(in: directory, skippingKnown: false).errors
        }
    }

    /// Adds and starts the plugins in `directory` that are not services yet:
    /// files dropped in since, or fixed since they were refused (what `SIGHUP`
    /// does after restarting changed files).
    /// - Returns: the names of the services added, and one error per file refused.
    @discardableResult
    func startNewPlugins(directory: String) throws(PluginError) -> (started: [String], errors: [PluginError]) {
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

    /// ``startNewPlugins(directory:)`` for async callers, its scans on a thread
    /// of its own (see the async `addPlugins(directory:)`).
    @discardableResult
    func startNewPlugins(directory: String) async throws(PluginError) -> (started: [String], errors: [PluginError]) {
        try await offTheCooperativePool(directory) { () throws(PluginError) in
            try self.startNewPlugins(directory: directory)
        }
    }

    /// Runs `work` on a thread of its own (see ``OffThePool``) and awaits its
    /// result; `file` is what the error names when there is no thread for it.
    private func offTheCooperativePool<T: Sendable>(_ file: String,
                                                    _ work: @escaping @Sendable () throws(PluginError) -> T) async throws(PluginError) -> T {
        let result: Result<T, PluginError>
        do {
            result = try await OffThePool.run(name: "host:plugins") { Result { () throws(PluginError) in try work() } }
        } catch {
            throw PluginError(.loadFailed, file: file, reason: "no thread to load plugins on: \(error)")
        }
        return try result.get()
    }

    /// `directory` as an absolute path, resolved against the current directory
    /// the first time this scheduler sees it and the same ever after: a
    /// thread-isolated plugin may `chdir`, and a later ``startNewPlugins(directory:)``
    /// must still read the directory first meant.
    public func resolvedDirectory(_ directory: String) -> String {
        guard !directory.hasPrefix("/") else { return directory }
        return resolvedDirectories.withLock { resolved in
            if let known = resolved[directory] { return known }
            let absolute = PluginDirectory.absolute(directory)
            resolved[directory] = absolute
            return absolute
        }
    }

    /// The plugins in a directory (resolved, checked, listed; stray sidecars
    /// warned about), and the files that cannot be used as services.
    private func scan(_ directory: String) throws(PluginError) -> (directory: String, entries: [PluginDirectory.Entry],
                                                                   errors: [PluginError]) {
        let directory = resolvedDirectory(directory)
        if !configuration.allowInsecurePlugins {
            try FileSafety.check(directory, as: .directory)
        }
        let plugins = PluginDirectory(path: directory)
        let (entries, errors) = try plugins.scan()
        warnAboutStraySidecars(in: plugins, besides: entries)
        return (directory, entries, errors)
    }

    private func addPlugins(in directory: String, skippingKnown: Bool) throws(PluginError) -> (added: [String], errors: [PluginError]) {
        let (_, entries, scanErrors) = try scan(directory)
        var errors = scanErrors
        var added: [String] = []
        var new: [PluginDirectory.Entry] = []
        for entry in entries {
            if skippingKnown, let known = manager.service(named: entry.name) {
                if let plugin = known as? any ReloadableService, plugin.file != entry.file {
                    errors.append(PluginError(.duplicateName, file: entry.file,
                                              reason: "service name '\(entry.name)' is already used by \(plugin.file); this file is ignored"))
                }
                continue
            }
            new.append(entry)
        }
        // Each file is staged (sidecar, checks, copy, scan) ahead, on the
        // other cores, while this thread opens the ones before it.
        let staging = Prefetcher(count: new.count, helpers: Prefetcher<StagingResult>.helpers(atMost: 4)) { [self, new] index in
            stageAhead(new[index])
        }
        defer { staging.cancel() }
        for (index, entry) in new.enumerated() {
            do {
                let (configuration, staged) = try staging.take(index).get()
                added.append(try addPlugin(file: entry.file, name: entry.name, configuration: configuration, staged: staged))
            } catch {
                errors.append(error)
            }
        }
        for error in errors {
            logger.error("\(error)", metadata: ["file": "\(error.file)", "code": "\(error.code)"])
        }
        return (added, errors)
    }

    /// Nothing is staged after shutdown, which removes the runtime directory the copies go to.
    private func refuseAfterShutdown(_ file: String) throws(PluginError) {
        guard !manager.hasShutDown else { throw PluginError(.loadFailed, file: file, reason: "the scheduler has shut down") }
    }

    private typealias StagingResult = Result<(ServiceConfiguration, StagedPlugin?), PluginError>

    /// A directory entry's configuration and its file staged, as
    /// ``addPlugin(file:name:configuration:)`` would make them; the file is
    /// left unstaged when the configuration will be refused anyway.
    private func stageAhead(_ entry: PluginDirectory.Entry) -> StagingResult {
        Result { () throws(PluginError) in
            try refuseAfterShutdown(entry.file)
            let configuration = if let sidecar = entry.sidecar { try loadSidecar(sidecar) } else { ServiceConfiguration() }
            guard configuration.problem == nil else { return (configuration, nil) }
            return (configuration, try loader.stage(file: entry.file, scanTimeout: configuration.startTimeout))
        }
    }

    /// Warns about each stray sidecar once while it stays stray, not on every reload.
    private func warnAboutStraySidecars(in plugins: PluginDirectory, besides entries: [PluginDirectory.Entry]) {
        let stray = plugins.straySidecars(besides: entries)
        let fresh = reportedStraySidecars.withLock { reported in
            defer { reported[plugins.path] = Set(stray.map(\.warning)) }
            return stray.filter { !(reported[plugins.path]?.contains($0.warning) ?? false) }
        }
        for (file, warning) in fresh {
            logger.warning("\(warning)", metadata: ["file": "\(file)"])
        }
    }

    // MARK: Reload

    /// Makes the services match the plugins directory, as supervisorctl's
    /// `update` does: new plugins are added and started; a removed plugin's
    /// service is stopped (dependents first) and removed; a changed file is
    /// hot-reloaded (rolled back if refused); a changed sidecar restarts its
    /// service with the new values, and an invalid one is reported and leaves
    /// the service as it was; failed services get one more start; a service
    /// stopped by an order stays stopped; services in backoff are left to it.
    /// What `SIGHUP` does. One reload runs at a time.
    /// - Parameter dryRun: only report what a reload would do.
    public func reload(directory: String, dryRun: Bool = false) async throws(PluginError) -> ReloadReport {
        try await reloads.withLock { () async throws(PluginError) -> ReloadReport in
            let plan = try await offTheCooperativePool(directory) { () throws(PluginError) in try self.plan(directory) }
            var report = plan.report(dryRun: dryRun)
            if !dryRun {
                await carryOut(plan, into: &report)
            }
            for refusal in report.refused {
                logger.error("\(refusal.file): \(refusal.reason)", metadata: ["file": "\(refusal.file)"])
            }
            logger.notice("reload: \(report.summary)")
            return report
        }
    }

    /// Reads the directory and every sidecar, and decides.
    private func plan(_ directory: String) throws(PluginError) -> ReloadPlan {
        let (directory, entries, scanErrors) = try scan(directory)
        let found = entries.map { entry in
            ReloadPlan.Found(entry: entry, configuration: Result { () throws(PluginError) in
                if let sidecar = entry.sidecar { try loadSidecar(sidecar) } else { ServiceConfiguration() }
            })
        }
        let failed = Set(manager.failedServices)
        let running = manager.services.compactMap { $0 as? any ReloadableService }
            .filter { PluginDirectory.directory(of: $0.file) == directory }
            .map { service in
                ReloadPlan.Running(name: service.name, file: service.file, configuration: service.configuration,
                                   fileChanged: service.fileChanged, failed: failed.contains(service.name),
                                   stoppedByOrder: manager.isStoppedByOrder(service.name), hung: manager.isHung(service.name))
            }
        return ReloadPlan(found: found, running: running, scanErrors: scanErrors)
    }

    private func carryOut(_ plan: ReloadPlan, into report: inout ReloadReport) async {
        for step in plan.steps {
            switch step {
            case .remove(let name):
                logger.notice("its plugin file is gone; stopping and removing the service", metadata: ["service": "\(name)"])
                try? await manager.remove(name)
            // Each step looks again at orders given since the plan was made:
            // an operator's stop meanwhile wins.
            case .restart(let name) where manager.isStoppedByOrder(name),
                 .retry(let name) where manager.isStoppedByOrder(name):
                report.changed.removeAll { $0 == name }
                report.retried.removeAll { $0 == name }
                report.unchanged.append(name)
            case .restart(let name):
                logger.notice("its plugin file changed; restarting", metadata: ["service": "\(name)"])
                do {
                    try await manager.restart(name, cause: .reload)
                } catch {
                    refuse(name, as: "", error.reason, in: &report)
                }
            case .reconfigure(let entry, let configuration, let start):
                // Checked (and scanned) before the running service goes, so
                // that a file that would be refused leaves it running.
                do {
                    _ = try await offTheCooperativePool(entry.file) { () throws(PluginError) in
                        try self.loader.stage(file: entry.file, scanTimeout: configuration.startTimeout)
                    }
                } catch {
                    refuse(entry.name, as: entry.file, error.reason, in: &report)
                    report.unchanged.append(entry.name)
                    continue
                }
                logger.notice("\(entry.sidecar ?? "its sidecar") changed; restarting with the new values", metadata: ["service": "\(entry.name)"])
                let start = start && !manager.isStoppedByOrder(entry.name)
                // What it kept goes to the service with the new values (its
                // descriptors stay open meanwhile: this holds them).
                let kept = (manager.service(named: entry.name) as? any ReloadableService)?.keptState ?? KeptState()
                try? await manager.remove(entry.name)
                await add(entry, configuration, start: start, keeping: kept, into: &report)
            case .add(let entry, let configuration):
                await add(entry, configuration, start: true, into: &report)
            case .retry(let name):
                logger.notice("retrying a failed service", metadata: ["service": "\(name)"])
                do {
                    try manager.retry(name)
                } catch {
                    refuse(name, as: "", error.reason, in: &report)
                }
            case .keep, .refuse:
                break
            }
        }
    }

    /// Adds a plugin (its load-time scan on a thread of its own) and starts it.
    private func add(_ entry: PluginDirectory.Entry, _ configuration: ServiceConfiguration, start: Bool,
                     keeping kept: KeptState = KeptState(), into report: inout ReloadReport) async {
        do {
            _ = try await offTheCooperativePool(entry.file) { () throws(PluginError) in
                try self.addPlugin(file: entry.file, name: entry.name, configuration: configuration, staged: nil, keptState: kept)
            }
        } catch {
            refuse(entry.name, as: entry.file, error.reason, in: &report)
            return
        }
        guard start else { return }
        do {
            try manager.start(entry.name)
        } catch {
            logger.error("\(error.reason)", metadata: ["service": "\(entry.name)"])
        }
    }

    /// Moves a service the report counted as done to the refused.
    private func refuse(_ name: String, as file: String, _ reason: String, in report: inout ReloadReport) {
        report.added.removeAll { $0 == name }
        report.changed.removeAll { $0 == name }
        report.retried.removeAll { $0 == name }
        report.refused.append(ReloadReport.Refusal(file: file.isEmpty ? name : file, reason: reason))
    }

    private func sidecarConfiguration(for file: String, name: String) throws(PluginError) -> ServiceConfiguration {
        let directory = PluginDirectory.directory(of: file)
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
    public func restart(_ name: String) async throws(ServiceError) { try await manager.restart(name, cause: .operator) }

    /// Stops a service and forgets it.
    public func remove(_ name: String) async throws(ServiceError) { try await manager.remove(name) }

    /// Restarts every plugin service whose file changed since its image was
    /// loaded (what `SIGHUP` does); the others keep running. A service stopped
    /// by an order stays stopped: its next start loads the file as it is then.
    /// - Returns: the names of the services restarted.
    @discardableResult
    func restartChanged() async -> [String] {
        var restarted: [String] = []
        for case let service as any ReloadableService in manager.services
        where service.fileChanged && !manager.isStoppedByOrder(service.name) {
            logger.notice("\(service.file) changed; restarting", metadata: ["service": "\(service.name)"])
            do {
                try await manager.restart(service.name, cause: .reload)
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
        // Waits for the fork server to exit (up to its answer timeout) and removes files.
        let ending: @Sendable () -> Void = { [launcher, loader] in
            launcher?.shutdown()
            loader.runtimeDirectory.remove()
        }
        do {
            try await OffThePool.run(name: "host:shutdown", ending)
        } catch {
            ending()
        }
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

    /// How every service stands, as an operator sees it, in the order they were added.
    public func status() -> [ServiceStatus] { manager.statuses() }

    /// How one service stands, as an operator sees it; `nil` if there is no such service.
    public func status(of name: String) -> ServiceStatus? { manager.status(of: name) }

    /// Every service's state and counters, in the order they were added:
    /// what metrics and readiness read (cheaper than ``status()``).
    public func samples() -> [ServiceSample] { manager.samples() }

    /// How many services are in each state: cheap (no status is built), for a status line.
    public func stateCounts() -> [ServiceStatus.State: Int] { manager.stateCounts }

    /// ``status()`` for async callers (the control API), built on a thread of
    /// its own: the first one reads every plugin image to compute its SHA-256.
    public func statusOffThePool() async -> [ServiceStatus] {
        (try? await offTheCooperativePool(runtimeDirectory) { () throws(PluginError) in self.status() }) ?? status()
    }

    /// ``status(of:)`` for async callers, built on a thread of its own (see ``statusOffThePool()``).
    public func statusOffThePool(of name: String) async -> ServiceStatus? {
        (try? await offTheCooperativePool(runtimeDirectory) { () throws(PluginError) in self.status(of: name) }) ?? status(of: name)
    }

    /// The fork server's pid, once one runs; for white-box tests.
    var forkServerPID: Int32? { launcher?.serverProcess }

    /// How many load-time scan processes were started (a cached verdict starts none).
    var scanCount: Int { loader.scanner?.scanCount ?? 0 }

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
