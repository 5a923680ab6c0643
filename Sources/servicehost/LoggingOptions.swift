import ArgumentParser
import Logging
import ServiceHostControl

/// Options shared by every subcommand that logs.
struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "The lowest level to log: trace, debug, info, notice, warning (or warn), error or critical; in any case.")
    var logLevel: String = "info"

    func validate() throws {
        guard level != nil else {
            throw ValidationError("'\(logLevel)' is not a log level; use one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
    }

    /// The level named, in any case, `warn` being `warning` as most tools spell it.
    var level: Logger.Level? {
        let name = logLevel.lowercased()
        return Logger.Level(rawValue: name == "warn" ? "warning" : name)
    }

    /// Sends every log line to standard error at the chosen level, and
    /// returns the host's logger. With a `ring`, each service's lines are
    /// kept there too, for the control API.
    func bootstrap(keepingServiceLinesIn ring: ServiceLogRing? = nil) -> Logger {
        let level = self.level ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            guard let ring else { return handler }
            return MultiplexLogHandler([handler, LogRingHandler(ring: ring, logLevel: level)])
        }
        return Logger(label: "servicehost")
    }
}
