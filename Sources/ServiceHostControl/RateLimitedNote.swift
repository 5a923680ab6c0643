import Synchronization

/// Lets a repeated log line through at most once per period, and says how
/// many were held back since: what a connect loop cannot turn into a flood.
final class RateLimitedNote: Sendable {
    private struct State {
        var last: ContinuousClock.Instant?
        var held = 0
    }

    private let period: Duration
    private let state = Mutex(State())

    init(every period: Duration) {
        self.period = period
    }

    /// Calls `log` with a suffix naming the lines held back, unless one went out less than a period ago.
    func note(_ log: (_ suppressed: String) -> Void) {
        let now = ContinuousClock.now
        let held: Int? = state.withLock { state in
            if let last = state.last, now - last < period {
                state.held += 1
                return nil
            }
            defer { state.last = now; state.held = 0 }
            return state.held
        }
        guard let held else { return }
        log(held > 0 ? " (and \(held) more like it in the last second, not logged)" : "")
    }
}
