import Synchronization

/// Runs blocking work (a plugin's load-time scan, plugin code, a wait for a
/// process to exit) on a host thread of its own for an async caller.
///
/// Swift's cooperative pool has only as many threads as there are cores (two
/// on a small machine): one of them blocked for seconds stalls every task of
/// the program (the control API, stops awaiting their service, other tests).
/// A test run that built fixtures and scanned plugins on the pool was seen
/// taking 4 s to resume a stop that had ended in milliseconds.
enum OffThePool {
    enum Outcome<T: Sendable>: Sendable {
        case finished(T)
        /// `limit` passed first; the work goes on, and its result is dropped.
        case timedOut
    }

    /// Runs `work` on a thread named `name` and awaits its result.
    static func run<T: Sendable>(name: String, _ work: @escaping @Sendable () -> T) async throws(HostThread.SpawnError) -> T {
        switch try await run(name: name, within: nil, work) {
        case .finished(let value):
            return value
        case .timedOut:
            preconditionFailure("a wait without a limit timed out")
        }
    }

    /// Runs `work` on a thread named `name` and awaits it at most `limit`
    /// (`nil`: until it returns).
    static func run<T: Sendable>(name: String, within limit: Duration?,
                                 _ work: @escaping @Sendable () -> T) async throws(HostThread.SpawnError) -> Outcome<T> {
        let result = Mutex<T?>(nil)
        let done = Completion()
        try HostThread.spawn(name: name) {
            let value = work()
            result.withLock { $0 = value }
            done.complete()
        }
        guard await done.wait(timeout: limit), let value = result.withLock({ $0 }) else { return .timedOut }
        return .finished(value)
    }
}
