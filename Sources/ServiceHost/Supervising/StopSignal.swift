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
    /// The descriptors plugins poll (`svc_host.stop_descriptor`), one per
    /// binding slot: two with `reload = "overlap"`, so that a handover makes
    /// readable only the old version's, not the one the new version's threads poll.
    private let pollables = Mutex(Pollables())
    /// How many binding slots a service has at most.
    static let slots = 2
    private static let notMade: Int32 = -2

    private struct Pollables {
        /// Made on first use; ``notMade`` until then.
        var descriptors = [Int32](repeating: StopSignal.notMade, count: StopSignal.slots)
        /// The slot whose run is handed over, while `.handover` is pending.
        var handingOver: Int?
    }

    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: Request.none.rawValue)
    }

    deinit {
        word.deallocate()
        for descriptor in pollables.withLock({ $0.descriptors }) where descriptor >= 0 { close(descriptor) }
    }

    /// A descriptor of binding slot `slot` that is readable while a stop of
    /// its run is pending, made on the first call and the same after; -1
    /// when none could be made.
    func descriptor(slot: Int) -> Int32 {
        precondition((0..<Self.slots).contains(slot), "no binding slot \(slot)")
        return pollables.withLock { pollables in
            let current = pollables.descriptors[slot]
            if current != Self.notMade { return current }
            let made = cthread_stop_descriptor_make()
            // None could be made (no descriptor left): not remembered, so a later call tries again.
            guard made >= 0 else { return -1 }
            pollables.descriptors[slot] = made
            // A stop raised before the descriptor existed shows on it as well.
            if isPending(for: slot, pollables) { cthread_stop_descriptor_signal(made) }
            return made
        }
    }

    /// The strongest request made since the last reset.
    @inline(__always)
    var request: Request {
        Request(rawValue: cthread_word_load(word)) ?? .none
    }

    /// Raises the pending request to `request` (never lowers it) and wakes a
    /// pause; a handover is raised with ``raiseHandover(slot:)``.
    func raise(_ request: Request) {
        precondition(request != .handover, "a handover names the slot handed over")
        cthread_word_raise(word, request.rawValue)
        signalPending()
        observer?(request)
    }

    /// Raises a handover of the run on binding slot `slot`: only that slot's
    /// descriptor becomes readable.
    func raiseHandover(slot: Int) {
        pollables.withLock { $0.handingOver = slot }
        cthread_word_raise(word, Request.handover.rawValue)
        signalPending()
        observer?(.handover)
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
        clearDescriptorsUnlessPending()
    }

    /// Clears every request: a new run is starting by order.
    func reset() {
        cthread_word_store(word, Request.none.rawValue)
        clearDescriptorsUnlessPending()
    }

    /// Whether the run on `slot` is asked to end: every slot's for a stop,
    /// only the slot handed over for a handover.
    private func isPending(for slot: Int, _ pollables: Pollables) -> Bool {
        switch request {
        case .none: false
        case .handover: pollables.handingOver == slot
        case .requested, .ordered: true
        }
    }

    /// Signals the descriptors whose runs are asked to end. Under the lock,
    /// after the word changed: a raise and a clear that overlap leave each
    /// descriptor as the word says, whichever locks last.
    private func signalPending() {
        pollables.withLock { pollables in
            for (slot, descriptor) in pollables.descriptors.enumerated() where descriptor >= 0 && isPending(for: slot, pollables) {
                cthread_stop_descriptor_signal(descriptor)
            }
        }
    }

    /// Drains the descriptors, then signals again those whose runs are still
    /// asked to end: a raise that lands during the drain is never lost.
    private func clearDescriptorsUnlessPending() {
        pollables.withLock { pollables in
            if request != .handover { pollables.handingOver = nil }
            for (slot, descriptor) in pollables.descriptors.enumerated() where descriptor >= 0 {
                cthread_stop_descriptor_clear(descriptor)
                if isPending(for: slot, pollables) { cthread_stop_descriptor_signal(descriptor) }
            }
        }
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
