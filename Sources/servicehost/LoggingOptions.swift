import ArgumentParser
import Logging
import ServiceHostControl

/// Options shared by every subcommand that logs.
struct LoggingOptions: ParsableArguments {
    @Option(name: .long, help: "The lowest level to log: trace, debug, info, notice, warning (or warn), error or critical; in any case.")
    var logLevel: String = "info"

    @Option(name: .long, help: "How log lines are written: 'text' (for people), 'json' (one object per line) or 'journal' (with syslog priorities, for journald). Default: journal when standard error is connected to the journal ($JOURNAL_STREAM), else text.")
    var logFormat: String?

    func validate() throws {
        guard level != nil else {
            throw ValidationError("'\(logLevel)' is not a log level; use one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        if let logFormat, LogFormat(rawValue: logFormat.lowercased()) == nil {
            throw ValidationError("'\(logFormat)' is not a log format; use one of \(LogFormat.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
    }

    /// The level named, in any case, `warn` being `warning` as most tools spell it.
    var level: Logger.Level? {
        let name = logLevel.lowercased()
        return Logger.Level(rawValue: name == "warn" ? "warning" : name)
    }

    var format: LogFormat {
        logFormat.flatMap { LogFormat(rawValue: $0.lowercased()) } ?? .default()
    }

    /// Sends every log line to standard error at the chosen level and in the
    /// chosen format, and returns the host's logger. With a `ring`, each
    /// service's lines are kept there too, for the control API.
    func bootstrap(keepingServiceLinesIn ring: ServiceLogRing? = nil) -> Logger {
        let level = self.level ?? .info
        let format = self.format
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler
            switch format {
            case .text:
                handler = TextLogHandler(label: label)
            case .json, .journal:
                handler = LogLineHandler(format: format, logLevel: level)
            }
            handler.logLevel = level
            guard let ring else { return handler }
            return MultiplexLogHandler([handler, LogRingHandler(ring: ring, logLevel: level)])
        }
        return Logger(label: "servicehost")
    }
}
