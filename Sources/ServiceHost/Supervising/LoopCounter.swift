import Synchronization

/// Counts a service's loop turns. Written by one thread (the service's, or
/// the one that hears a worker's reports) with a relaxed load and store, so
/// the hot path has no locked instruction; read by anyone, for metrics.
final class LoopCounter: Sendable {
    private let count = Atomic<UInt64>(0)

    var value: UInt64 { count.load(ordering: .relaxed) }

    /// Sets the count; only from the thread that owns the counter.
    @inline(__always)
    func store(_ value: UInt64) {
        count.store(value, ordering: .relaxed)
    }
}
