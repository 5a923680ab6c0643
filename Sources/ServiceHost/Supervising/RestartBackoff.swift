/// How long to wait before restarting a service that keeps stopping.
///
/// The first restart after a healthy run is immediate, so a service that
/// stops once is back at once; each further consecutive restart waits twice as
/// long as the last, up to a cap; a run of `healthyAfter` resets it.
struct RestartBackoff: Sendable {
    let initial: Duration
    let maximum: Duration
    let healthyAfter: Duration
    /// Restarts since the last healthy run.
    private(set) var consecutive = 0

    init(initial: Duration, maximum: Duration, healthyAfter: Duration) {
        self.initial = initial
        self.maximum = maximum
        self.healthyAfter = healthyAfter
    }

    init(_ configuration: ServiceConfiguration) {
        self.init(initial: configuration.backoffInitial, maximum: configuration.backoffMax,
                  healthyAfter: configuration.healthyAfter)
    }

    /// The wait before the next restart of a service whose last run lasted `ran`.
    mutating func nextDelay(afterRunning ran: Duration) -> Duration {
        if ran >= healthyAfter { consecutive = 0 }
        defer { consecutive += 1 }
        guard consecutive > 0, initial > .zero else { return .zero }
        var delay = initial
        for _ in 1..<consecutive {
            delay *= 2
            if delay >= maximum { return maximum }
        }
        return min(delay, maximum)
    }

    /// An order to start begins a fresh sequence.
    mutating func reset() { consecutive = 0 }
}
