import Foundation
import Synchronization

/// Tells a running service to stop, and wakes it from any pause.
///
/// The event loop reads the pending request once per turn: a single atomic
/// load, so checking costs nothing measurable next to a call into a plugin.
/// Pauses (the loop interval, the start delay, a restart backoff) wait on a
/// condition that a request signals, so a stop never waits a pause out.
final class StopSignal: @unchecked Sendable {
    enum Request: UInt8, Comparable {
        case none = 0
        /// The service asked to stop itself.
        case requested = 1
        /// The scheduler ordered the stop. Outranks `requested`.
        case ordered = 2

        static func < (lhs: Request, rhs: Request) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    private let pending = Atomic<UInt8>(Request.none.rawValue)
    private let condition = NSCondition()
    /// Told of every request, after it is pending: a service whose work runs
    /// elsewhere (a worker process) passes it on. Set before the first start.
    var observer: (@Sendable (Request) -> Void)?

    /// The strongest request made since the last reset.
    @inline(__always)
    var request: Request {
        Request(rawValue: pending.load(ordering: .acquiring)) ?? .none
    }

    /// Raises the pending request to `request` (never lowers it) and wakes a pause.
    func raise(_ request: Request) {
        condition.lock()
        var current = pending.load(ordering: .relaxed)
        while current < request.rawValue {
            let (exchanged, original) = pending.compareExchange(
                expected: current, desired: request.rawValue, ordering: .acquiringAndReleasing)
            if exchanged { break }
            current = original
        }
        condition.broadcast()
        condition.unlock()
        observer?(request)
    }

    /// Clears a service's own stop request before a new start; an order stays.
    func clearRequested() {
        _ = pending.compareExchange(expected: Request.requested.rawValue, desired: Request.none.rawValue, ordering: .acquiringAndReleasing)
    }

    /// Clears every request: a new run is starting by order.
    func reset() {
        pending.store(Request.none.rawValue, ordering: .releasing)
    }

    /// Waits for `duration` or until a request at least as strong as `level`
    /// is raised. Returns whether such a request is pending.
    @discardableResult
    func pause(for duration: Duration, unless level: Request = .requested) -> Bool {
        let deadline = Date(timeIntervalSinceNow: duration.seconds)
        condition.lock()
        defer { condition.unlock() }
        while request < level {
            if !condition.wait(until: deadline) { break }
        }
        return request >= level
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
