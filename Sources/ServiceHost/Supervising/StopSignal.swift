import CThreadShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Tells a running service to stop, and wakes it from any pause.
///
/// The event loop reads the pending request once per turn: a single atomic
/// load, so checking costs nothing measurable next to a call into a plugin.
/// Pauses (the loop interval, the start delay, a restart backoff) sleep on the
/// same word with a futex, which a request wakes, so a stop never waits a
/// pause out. An idle service wakes once per interval, and with a thousand
/// services that wakeup is most of what the host costs: one system call each.
final class StopSignal: @unchecked Sendable {
    enum Request: UInt32, Comparable {
        case none = 0
        /// A new version was created beside the running one (`reload =
        /// "overlap"`): the plugin's run should end, and the service goes on
        /// with the new version. Not a stop of the service.
        case handover = 1
        /// The service asked to stop itself.
        case requested = 2
        /// The scheduler ordered the stop. Outranks `requested`.
        case ordered = 3

        static func < (lhs: Request, rhs: Request) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// The word the requests are kept in, and the futex pauses sleep on.
    private let word: UnsafeMutablePointer<UInt32>
    /// Told of every request, after it is pending: a service whose work runs
    /// elsewhere (a worker process) passes it on. Set before the first start.
    var observer: (@Sendable (Request) -> Void)?
    /// The descriptor a plugin polls (`svc_host.stop_descriptor`): made on
    /// first use; ``notMade`` until then, -1 if it could not be made.
    private let pollable = Atomic<Int32>(StopSignal.notMade)
    private static let notMade: Int32 = -2

    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: Request.none.rawValue)
    }

    deinit {
        word.deallocate()
        let descriptor = pollable.load(ordering: .acquiring)
        if descriptor >= 0 { close(descriptor) }
    }

    /// A descriptor that is readable while a stop is pending, made on the
    /// first call and the same after; -1 when none could be made.
    func descriptor() -> Int32 {
        let current = pollable.load(ordering: .acquiring)
        if current != Self.notMade { return current }
        let made = cthread_stop_descriptor_make()
        // None could be made (no descriptor left): not remembered, so a later call tries again.
        guard made >= 0 else { return -1 }
        let (exchanged, original) = pollable.compareExchange(expected: Self.notMade, desired: made, ordering: .sequentiallyConsistent)
        guard exchanged else {
            close(made)
            return original
        }
        // A stop raised before the descriptor existed shows on it as well (a
        // raise after the exchange signals it itself: both may, harmlessly).
        // The fence pairs with raise's: of the two, at least one sees the other.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if request != .none { cthread_stop_descriptor_signal(made) }
        return made
    }

    /// The strongest request made since the last reset.
    @inline(__always)
    var request: Request {
        Request(rawValue: cthread_word_load(word)) ?? .none
    }

    /// Raises the pending request to `request` (never lowers it) and wakes a pause.
    func raise(_ request: Request) {
        cthread_word_raise(word, request.rawValue)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let descriptor = pollable.load(ordering: .sequentiallyConsistent)
        if descriptor >= 0 { cthread_stop_descriptor_signal(descriptor) }
        observer?(request)
    }

    /// Clears a service's own stop request before a new start; an order stays.
    func clearRequested() {
        _ = cthread_word_replace(word, Request.requested.rawValue, Request.none.rawValue)
        clearHandover()
    }

    /// Clears a handover once the new version took over (a stop raised
    /// meanwhile stays), before the new version's first loop turn.
    func clearHandover() {
        _ = cthread_word_replace(word, Request.handover.rawValue, Request.none.rawValue)
        clearDescriptorUnlessPending()
    }

    /// Clears every request: a new run is starting by order.
    func reset() {
        cthread_word_store(word, Request.none.rawValue)
        clearDescriptorUnlessPending()
    }

    /// Drains the descriptor, then signals it again if a stop is pending:
    /// a raise that lands during the drain is never lost.
    private func clearDescriptorUnlessPending() {
        let descriptor = pollable.load(ordering: .acquiring)
        guard descriptor >= 0 else { return }
        cthread_stop_descriptor_clear(descriptor)
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if request != .none { cthread_stop_descriptor_signal(descriptor) }
    }

    /// Waits for `duration` or until a request at least as strong as `level`
    /// is raised. Returns whether such a request is pending.
    /// - Parameter grid: when given, the end of the pause is moved later, by
    ///   less than `grid`, onto a multiple of it, so that many services pausing
    ///   for the same interval wake together: one timer instead of hundreds.
    @discardableResult
    func pause(for duration: Duration, unless level: Request = .requested, grid: Duration? = nil) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        var end = now.nanoseconds + duration.nanoseconds
        if let grid, grid > .zero {
            let step = grid.nanoseconds
            end = (end + step - 1) / step * step
        }
        return cthread_word_wait(word, level.rawValue, end) >= level.rawValue
    }
}
