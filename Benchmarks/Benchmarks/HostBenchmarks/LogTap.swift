import Foundation
import Logging

/// A logger that drops everything but hands lines containing a marker to a
/// waiting benchmark: how the restart-latency plugin reports its samples.
final class LogTap: @unchecked Sendable {
    private let marker: String
    private let lock = NSLock()
    private var found: String?
    private var waiter: CheckedContinuation<String, Never>?

    init(marker: String) { self.marker = marker }

    var logger: Logger {
        var logger = Logger(label: "bench") { _ in Handler(tap: self) }
        // Only errors are logged, as an operator would run a host under load.
        logger.logLevel = .error
        return logger
    }

    func line() async -> String {
        await withCheckedContinuation { continuation in
            lock.lock()
            if let found {
                lock.unlock()
                continuation.resume(returning: found)
            } else {
                waiter = continuation
                lock.unlock()
            }
        }
    }

    fileprivate func offer(_ message: String) {
        guard message.contains(marker) else { return }
        let resumed: CheckedContinuation<String, Never>? = lock.withLock {
            guard found == nil else { return nil }
            found = message
            defer { waiter = nil }
            return waiter
        }
        resumed?.resume(returning: message)
    }

    private struct Handler: LogHandler {
        let tap: LogTap
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .error
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { tap.offer(event.message.description) }
    }
}
