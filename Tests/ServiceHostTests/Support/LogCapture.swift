import Foundation
import Logging

/// Collects every line logged through its logger, so that tests can assert
/// what the host said, and await a line instead of sleeping for it.
final class LogCapture: @unchecked Sendable {
    struct Entry: Sendable, CustomStringConvertible {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]

        var service: String? { metadata["service"] }
        var description: String { "[\(level)] \(metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")) \(message)" }
    }

    private struct Waiter {
        let predicate: @Sendable (Entry) -> Bool
        /// Resumed with `nil` when the wait timed out, so that it is never leaked.
        let continuation: CheckedContinuation<Entry?, Never>
    }

    private let lock = NSLock()
    private var stored: [Entry] = []
    private var waiters: [UUID: Waiter] = [:]

    var logger: Logger {
        var logger = Logger(label: "test") { _ in Handler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    var entries: [Entry] { lock.withLock { stored } }

    func entries(where predicate: (Entry) -> Bool) -> [Entry] { entries.filter(predicate) }

    /// Waits for the first entry (already logged or to come) that matches.
    /// - Throws: ``Timeout`` after `timeout`: a guard against a hung test, not a synchronisation.
    @discardableResult
    func waitFor(timeout: Duration = .seconds(20), _ description: String = "log line",
                 where predicate: @escaping @Sendable (Entry) -> Bool) async throws -> Entry {
        let identifier = UUID()
        return try await withDeadline(timeout, waiting: description, onTimeout: { self.cancel(identifier) }) {
            let found: Entry? = await withCheckedContinuation { continuation in
                self.lock.lock()
                if let found = self.stored.first(where: predicate) {
                    self.lock.unlock()
                    continuation.resume(returning: found)
                    return
                }
                self.waiters[identifier] = Waiter(predicate: predicate, continuation: continuation)
                self.lock.unlock()
            }
            // nil only after the timeout, which withDeadline reports.
            guard let found else { throw CancellationError() }
            return found
        }
    }

    /// Waits until `count` lines satisfy `predicate`, those already logged included.
    @discardableResult
    func waitFor(count: Int, timeout: Duration = .seconds(20), _ description: String = "log lines",
                 where predicate: @escaping @Sendable (Entry) -> Bool) async throws -> Entry {
        final class Tally: @unchecked Sendable { var matches = 0 }
        let tally = Tally()
        // Evaluated under the capture's lock, once per line: the tally needs no lock of its own.
        return try await waitFor(timeout: timeout, description) { entry in
            guard predicate(entry) else { return false }
            tally.matches += 1
            return tally.matches >= count
        }
    }

    private func cancel(_ identifier: UUID) {
        lock.withLock { waiters.removeValue(forKey: identifier) }?.continuation.resume(returning: nil)
    }

    fileprivate func append(_ entry: Entry) {
        var resumed: [CheckedContinuation<Entry?, Never>] = []
        lock.withLock {
            stored.append(entry)
            for (identifier, waiter) in waiters where waiter.predicate(entry) {
                resumed.append(waiter.continuation)
                waiters[identifier] = nil
            }
        }
        for continuation in resumed { continuation.resume(returning: entry) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append(Entry(level: event.level, message: event.message.description,
                                 metadata: merged.mapValues { "\($0)" }))
        }
    }
}

struct Timeout: Error, CustomStringConvertible {
    let waitingFor: String
    let after: Duration
    var description: String { "timed out after \(after) waiting for \(waitingFor)" }
}

/// Runs `body`, failing with ``Timeout`` if it has not finished by `timeout`.
/// On timeout `onTimeout` runs (it should make `body` return, e.g. by resuming
/// what it waits on) and `body`'s task is cancelled; the caller never waits
/// for `body` past the deadline, so a wait that ignores cancellation fails the
/// test instead of hanging the whole run.
func withDeadline<T: Sendable>(_ timeout: Duration, waiting description: String,
                               onTimeout: @escaping @Sendable () -> Void = {},
                               _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let outcome = FirstOutcome(continuation)
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            if outcome.settle(with: result) { outcome.timer?.cancel() }
        }
        outcome.timer = Task {
            try? await Task.sleep(for: timeout)
            if outcome.settle(with: .failure(Timeout(waitingFor: description, after: timeout))) {
                onTimeout()
                work.cancel()
            }
        }
    }
}

/// Resumes a continuation once, with whichever outcome comes first.
private final class FirstOutcome<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var storedTimer: Task<Void, Never>?

    init(_ continuation: CheckedContinuation<T, any Error>) { self.continuation = continuation }

    var timer: Task<Void, Never>? {
        get { lock.withLock { storedTimer } }
        set { lock.withLock { storedTimer = newValue } }
    }

    /// Resumes with `result` unless an outcome came first; returns whether it was first.
    func settle(with result: Result<T, any Error>) -> Bool {
        let pending: CheckedContinuation<T, any Error>? = lock.withLock {
            defer { continuation = nil }
            return continuation
        }
        pending?.resume(with: result)
        return pending != nil
    }
}
