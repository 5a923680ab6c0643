import Foundation
import Logging

/// A logger that drops everything but hands the lines containing a marker,
/// in order, to a waiting benchmark: how benchmark plugins report what they
/// measured from inside.
final class LogTap: @unchecked Sendable {
    private let marker: String
    let lines: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation
    private var iterator: AsyncStream<String>.AsyncIterator

    init(marker: String) {
        self.marker = marker
        (lines, continuation) = AsyncStream.makeStream(of: String.self)
        iterator = lines.makeAsyncIterator()
    }

    var logger: Logger {
        var logger = Logger(label: "bench") { _ in Handler(tap: self) }
        // Only errors are logged, as an operator would run a host under load.
        logger.logLevel = .error
        return logger
    }

    /// The next line with the marker.
    func line() async -> String {
        await iterator.next() ?? ""
    }

    fileprivate func offer(_ message: String) {
        if message.contains(marker) { continuation.yield(message) }
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
