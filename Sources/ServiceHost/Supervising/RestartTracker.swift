/// Decides, for one service, what follows a run that ended without an
/// order: a restart after some backoff, staying stopped, or giving up. A pure
/// value: the time is a parameter, so every decision can be tested without
/// threads or sleeps.
struct RestartTracker: Sendable {
    enum Decision: Equatable {
        /// Start again after `delay`; `restart` counts restarts since the last order,
        /// `attempt` numbers the coming start among all the service's start attempts.
        case restart(restart: Int, attempt: Int, delay: Duration)
        /// Stay stopped, as the policy says; not a failure.
        case remainStopped(why: String)
        /// Stay stopped and be marked failed until a retry or a start order.
        case giveUp(why: String)
    }

    private var backoff: RestartBackoff
    let retries: Int?
    let restartLimit: Int
    let restartWindow: Duration
    let healthyAfter: Duration
    /// Restarts since the last start order.
    private(set) var restarts = 0
    /// Runs that ended (a failed create included), in the service's whole life.
    private(set) var attempts = 0
    /// When the restarts in the intensity window happened, oldest first.
    private var recentRestarts: [ContinuousClock.Instant] = []
    /// Started once more by a retry after giving up: unless that run proves
    /// healthy, the service gives up again at once rather than getting a
    /// whole new budget.
    private(set) var onRetry = false

    init(_ configuration: ServiceConfiguration) {
        backoff = RestartBackoff(configuration)
        retries = configuration.retries
        restartLimit = configuration.restartLimit
        restartWindow = configuration.restartWindow
        healthyAfter = configuration.healthyAfter
    }

    /// A start order: a fresh budget.
    mutating func orderedStart() {
        backoff.reset()
        restarts = 0
        recentRestarts.removeAll()
        onRetry = false
    }

    /// A retry of a service that gave up: one more start, not a new budget.
    mutating func retry() {
        backoff.reset()
        onRetry = true
    }

    /// Counts a run that ended, however it ended.
    mutating func runEnded() {
        attempts += 1
    }

    /// What follows a run that ended on its own.
    /// - Parameters:
    ///   - policy: the restart policy in force; `recoveryOff` says it came from the host's `--no-recovery`.
    ///   - stopsForGood: the service cannot start until something outside changes (its file).
    ///   - retryHint: how a user retries a failed service, e.g. "send SIGHUP".
    mutating func decide(after reason: StopReason, ran: Duration, now: ContinuousClock.Instant,
                         policy: RestartPolicy, recoveryOff: Bool = false, stopsForGood: Bool = false,
                         retryHint: String) -> Decision {
        if stopsForGood {
            return .giveUp(why: "its plugin cannot be loaded; fix the file, then \(retryHint). \(reason)")
        }
        guard policy.restarts(afterFailure: reason.isFailure) else {
            return .remainStopped(why: "not restarting: restart policy is \(policy)\(recoveryOff ? ", recovery is off" : "")")
        }
        if onRetry {
            guard ran >= healthyAfter else {
                return .giveUp(why: "its retry (one more start) ended too: \(reason); it stays stopped until retried (\(retryHint))")
            }
            // The retried run was healthy: the service has earned its budget back.
            onRetry = false
            restarts = 0
            recentRestarts.removeAll()
        }
        if let retries, restarts >= retries {
            return .giveUp(why: "gave up after \(restarts) restart\(restarts == 1 ? "" : "s") (retries = \(retries)); "
                + "it stays stopped until retried (\(retryHint)). Last: \(reason)")
        }
        recentRestarts.removeAll { now - $0 > restartWindow }
        if restartLimit > 0, recentRestarts.count >= restartLimit {
            let count = recentRestarts.count
            return .giveUp(why: "restarted \(count) time\(count == 1 ? "" : "s") within \(restartWindow.milliseconds) ms "
                + "(restart_limit = \(restartLimit)); it stays stopped until retried (\(retryHint)). Last: \(reason)")
        }
        if restartLimit > 0 { recentRestarts.append(now) }
        restarts += 1
        return .restart(restart: restarts, attempt: attempts + 1, delay: backoff.nextDelay(afterRunning: ran))
    }
}
