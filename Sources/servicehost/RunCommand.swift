import ArgumentParser
import Dispatch
import Logging
import ServiceHost

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
            SIGHUP restarts the services whose files changed, starts plugins \
            added (or fixed) since, and retries, once, those that gave up.
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

    func validate() throws {
        guard Isolation(name: isolation) != nil else {
            throw ValidationError("'\(isolation)' is not an isolation; use 'thread' or 'process'.")
        }
    }

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap()
        let signals = SignalStream(SIGINT, SIGTERM, SIGHUP)
        var configuration = Scheduler.Configuration(recovery: !noRecovery, isolation: Isolation(name: isolation) ?? .thread,
                                                    allowInsecurePlugins: allowInsecurePlugins)
        configuration.retryHint = "send SIGHUP"
        let scheduler = try Scheduler(configuration: configuration, logger: logger)
        do {
            let errors = try scheduler.addPlugins(directory: plugins)
            let count = scheduler.snapshot().count
            logger.notice("loaded \(count) plugin\(count == 1 ? "" : "s") from \(plugins)\(errors.isEmpty ? "" : ", \(errors.count) refused")")
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        logger.debug("plugin copies are loaded from \(scheduler.runtimeDirectory)")
        scheduler.startAll()
        for await signal in signals.stream {
            if signal == SIGHUP {
                logger.notice("SIGHUP: restarting services whose files changed, starting new plugins, retrying failed services")
                await scheduler.restartChanged()
                do {
                    try scheduler.startNewPlugins(directory: plugins)
                } catch {
                    logger.error("\(error)")
                }
                scheduler.retryFailed()
                continue
            }
            logger.notice("\(signal == SIGINT ? "SIGINT" : "SIGTERM"): stopping every service")
            break
        }
        await scheduler.shutdown()
        logger.notice("all services stopped")
    }
}

/// Delivers signals as an async sequence instead of running handlers in
/// signal context, where almost nothing is safe to do. The sources are only
/// kept alive here, never touched after setup, hence unchecked.
final class SignalStream: @unchecked Sendable {
    let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    init(_ signals: Int32...) {
        var continuation: AsyncStream<Int32>.Continuation!
        stream = AsyncStream { continuation = $0 }
        let yield = continuation!
        sources = signals.map { number in
            // The default action would end the process before the source sees the signal.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { yield.yield(number) }
            source.resume()
            return source
        }
    }
}
