import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceHost
import ServiceHostControl
import ServiceHostMetrics

#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Load every plugin in a directory and supervise the services until SIGINT or SIGTERM.",
        discussion: """
            Every *.so directly in the directory is one service, named after the file \
            without 'lib' and '.so', with an optional sidecar NAME.toml beside it. \
            SIGHUP (or `servicehost ctl reload`) makes the services match the \
            directory: new plugins start, removed ones stop, changed files and \
            sidecars restart their services, failed services are retried once.
            """
    )

    @Option(name: .long, help: "The plugins directory.")
    var plugins: String = "./plugins"

    @Flag(name: .long, help: "Leave services that stop on their own stopped (default restart policy 'never').")
    var noRecovery = false

    @Option(name: .long, help: "Where plugins run unless their sidecar says: 'thread' (in the host) or 'process' (a worker process each).")
    var isolation: String = "thread"

    @Flag(name: .long, help: "Load plugins, sidecars and directories that others than this user could have written.")
    var allowInsecurePlugins = false

    @Flag(name: .long, help: "Watch the plugins directory and reload when a plugin or sidecar is added, replaced or removed (once the change settles).")
    var watch = false

    @Option(name: .long, help: "The largest plugin file to load, in bytes (default 512 MiB).")
    var maxPluginSize: Int64 = Limits.defaultMaxPluginSize

    @Option(name: .long, help: ArgumentHelp(
        "Serve metrics and health, read only, over HTTP on this TCP address: GET /metrics, /livez, /readyz (off by default).",
        valueName: "address:port"))
    var http: String?

    func validate() throws {
        if let http, case .failure(let error) = ProbeServer.Configuration.parse(http) {
            throw ValidationError("--http: \(error)")
        }
        guard maxPluginSize > 0 else { throw ValidationError("--max-plugin-size must be positive.") }
        guard Isolation(name: isolation) != nil else {
            throw ValidationError("'\(isolation)' is not an isolation; use 'thread' or 'process'.")
        }
    }

    @OptionGroup var logging: LoggingOptions
    @OptionGroup var control: ControlOptions

    func run() async throws {
        let logs = ServiceLogRing()
        let logger = logging.bootstrap(keepingServiceLinesIn: logs)
        // Read before anything is started, and taken out of the environment
        // that workers and plugins' programs inherit.
        let systemd = SystemdNotifier()
        SystemdNotifier.removeItsVariables()
        let signals = HostSignals.install([SIGINT, SIGTERM, SIGHUP])
        HostLimits.raiseDescriptorLimit(logger: logger)
        var configuration = Scheduler.Configuration(recovery: !noRecovery, isolation: Isolation(name: isolation) ?? .thread,
                                                    allowInsecurePlugins: allowInsecurePlugins,
                                                    limits: Limits(maxPluginSize: maxPluginSize))
        configuration.retryHint = "send SIGHUP"
        let scheduler = try Scheduler(configuration: configuration, logger: logger)
        // Resolved once, before any plugin runs: a plugin may chdir, and SIGHUP
        // must still find the same directory.
        let plugins = scheduler.resolvedDirectory(plugins)
        let host = ControlAPI.HostInfo(version: ServiceHostVersion.current, pluginsDirectory: plugins)
        let metrics = HostMetrics(scheduler: scheduler, version: host.version, started: host.started)
        // Whatever in the process counts through swift-metrics is scraped with the host's own series.
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics.registry))
        let pulse = HostPulse()
        // Before any plugin is loaded: the socket's mode comes from the
        // process-wide umask at bind, which no plugin thread may see.
        var controlServer: ControlServer?
        if let path = control.path {
            let api = ControlAPI(scheduler: scheduler, logs: logs, host: host, metrics: metrics, logger: logger)
            let server = ControlServer(
                configuration: .init(path: path, controlGroup: control.controlGroup.flatMap(PeerAccess.groupID(named:))),
                api: api, logger: logger)
            do {
                try await server.start()
            } catch {
                logger.critical("\(error)")
                await scheduler.shutdown()
                throw ExitCode(2)
            }
            controlServer = server
        }
        // Listening while plugins load: /livez answers, /readyz says 503 until the initial start.
        var probeServer: ProbeServer?
        if let http, case .success(let address) = ProbeServer.Configuration.parse(http) {
            let server = ProbeServer(configuration: address, api: ProbeAPI(scheduler: scheduler, metrics: metrics, pulse: pulse),
                                     logger: logger)
            do {
                try await server.start()
            } catch {
                logger.critical("\(error)")
                await controlServer?.stop()
                await scheduler.shutdown()
                throw ExitCode(2)
            }
            probeServer = server
        }
        // swift-nio sets SIGPIPE to SIG_IGN when it makes its first socket,
        // and programs that plugins start would inherit that; the host's
        // own handler (reset to the default across exec) goes back.
        HostSignals.reassert()
        // Signals, settled changes of the directory and the end of the
        // shutdown arrive on one stream, so that a second SIGINT/SIGTERM can
        // cut the wait for hung services short.
        let (events, sink) = AsyncStream<HostEvent>.makeStream()
        // With --watch, a settled change in the directory reloads as SIGHUP
        // does; watched from before the first load, so that nothing dropped
        // in meanwhile is missed (its change is handled after the start).
        var watcher: DirectoryWatcher?
        if watch {
            do {
                watcher = try DirectoryWatcher(directory: plugins, logger: logger) { what in sink.yield(.changed(what)) }
                logger.notice("watching \(plugins) for changes")
            } catch {
                logger.error("\(error); --watch is off, send SIGHUP to reload")
            }
        }
        do {
            let errors = try await scheduler.addPlugins(directory: plugins)
            let count = scheduler.snapshot().count
            logger.notice("loaded \(count) plugin\(count == 1 ? "" : "s") from \(plugins)\(errors.isEmpty ? "" : ", \(errors.count) refused")")
        } catch {
            logger.critical("\(error)")
            watcher?.stop()
            await controlServer?.stop()
            await probeServer?.stop()
            throw ExitCode(2)
        }
        logger.debug("plugin copies are loaded from \(scheduler.runtimeDirectory)")
        Task { for await signal in signals { sink.yield(.signal(signal)) } }
        var pending = events.makeAsyncIterator()
        scheduler.startAll()
        // Ready (systemd's READY=1, /readyz) once no service is starting any
        // more: each started, failed or waits for a restart; or after
        // initialStartLimit, below systemd's default start timeout.
        var ready = false
        let initialStart = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await Task.sleep(for: Self.initialStartLimit) }
                group.addTask {
                    guard scheduler.stateCounts()[.starting, default: 0] > 0 else { return }
                    for await _ in scheduler.events() where scheduler.stateCounts()[.starting, default: 0] == 0 { return }
                }
                await group.next()
                group.cancelAll()
            }
            sink.yield(.initialStartComplete)
        }
        defer { initialStart.cancel() }
        // The pulse (/livez) beats, systemd's watchdog is pinged and its
        // status line kept current from this loop (see SupervisorTick): a
        // supervisor or loop stuck stops all three.
        var ticks = SupervisorTick(systemd: systemd, pulse: pulse, counts: { scheduler.stateCounts() })
        let tick = ticks.interval
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: tick)
                sink.yield(.tick)
            }
        }
        // A reload runs beside this loop, so that a SIGTERM never waits for
        // it (each new plugin's scan may take its start_timeout_ms); SIGHUPs
        // that arrive meanwhile make one more reload after it.
        var reloading = false
        var reloadAgain = false
        let reload = { @Sendable in
            Task {
                logger.notice("reloading \(plugins)")
                systemd?.send("RELOADING=1", "MONOTONIC_USEC=\(Self.monotonicMicroseconds())")
                do {
                    _ = try await scheduler.reload(directory: plugins)
                } catch {
                    logger.error("\(error)")
                }
                sink.yield(.reloaded)
            }
        }
        signals: while let event = await pending.next() {
            switch event {
            case .changed(let what):
                logger.notice("plugins directory changed (\(what))")
                if reloading { reloadAgain = true } else { reloading = true; _ = reload() }
            case .signal(SIGHUP) where reloading:
                reloadAgain = true
            case .signal(SIGHUP):
                reloading = true
                _ = reload()
            case .reloaded where reloadAgain:
                if ready { systemd?.send("READY=1") }
                reloadAgain = false
                _ = reload()
            case .reloaded:
                if ready { systemd?.send("READY=1") }
                reloading = false
            case .initialStartComplete:
                ready = true
                pulse.initialStartComplete()
                let summary = SupervisorTick.summary(scheduler.stateCounts())
                logger.notice("initial start complete: \(summary)")
                // During a reload, READY=1 would end it early for systemd: the reload's end sends it.
                if !reloading { systemd?.send("READY=1", "STATUS=\(summary)") }
            case .tick:
                ticks.tick()
            case .signal(let signal):
                logger.notice("\(Self.name(of: signal)): stopping every service\(reloading ? " (a SIGHUP reload in progress is abandoned)" : "")")
                systemd?.send("STOPPING=1")
                break signals
            case .shutDown:
                continue
            }
        }
        defer { ticker.cancel() }
        watcher?.stop()
        Task { await scheduler.shutdown(); sink.yield(.shutDown) }
        while let event = await pending.next() {
            switch event {
            case .shutDown:
                await controlServer?.stop()
                await probeServer?.stop()
                let abandoned = Self.stillRunning(scheduler)
                if !abandoned.isEmpty {
                    logger.error("stopped, abandoning \(abandoned.joined(separator: ", ")): still inside the plugin after stop_timeout_ms")
                    throw ExitCode(3)
                }
                logger.notice("all services stopped")
                return
            case .signal(let signal) where signal != SIGHUP:
                let abandoned = Self.stillRunning(scheduler)
                logger.error("\(Self.name(of: signal)) again: exiting without waiting\(abandoned.isEmpty ? "" : "; abandoned \(abandoned.joined(separator: ", "))")")
                // Not released on this path: the threads may still be inside plugin code.
                try? FileManager.default.removeItem(atPath: scheduler.runtimeDirectory)
                if let path = control.path { unlink(path) }
                throw ExitCode(3)
            case .tick:
                // Still pinged while services stop, so that a long stop is not taken for a hang.
                ticks.tick(refreshingStatus: false)
            case .signal, .reloaded, .changed, .initialStartComplete:
                continue
            }
        }
    }

    private enum HostEvent: Sendable {
        case signal(Int32)
        /// A SIGHUP reload finished.
        case reloaded
        /// The watched plugins directory changed, and the change settled.
        case changed(String)
        /// Time to ping systemd's watchdog and refresh its status line.
        case tick
        /// No service is starting any more (or the limit passed): the host is ready.
        case initialStartComplete
        case shutDown
    }

    /// The longest the host waits for its services' first starts before it
    /// says it is ready all the same: below systemd's default TimeoutStartSec (90 s).
    static let initialStartLimit = Duration.seconds(60)

    private static func monotonicMicroseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }

    private static func name(of signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        default: "signal \(signal)"
        }
    }

    /// The services whose thread or worker has not left the plugin.
    private static func stillRunning(_ scheduler: Scheduler) -> [String] {
        scheduler.snapshot().filter { $0.state == .started }.map(\.name)
    }
}
