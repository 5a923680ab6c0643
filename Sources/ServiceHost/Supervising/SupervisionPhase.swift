/// Where one service stands with its supervisor: a pure value, changed only
/// through the transitions below, so that "ordered to run", "has a thread"
/// and "gave up" can never disagree. Generic over the run (a ``ServiceRunner``
/// in the host) so that its transitions are tested without threads.
enum SupervisionPhase<Run: AnyObject> {
    /// Just added: never ordered to run. Nothing returns a service here.
    case idle
    /// Not ordered to run, and no thread: stopped by an order.
    case stopped
    /// Not ordered to run, and no thread: its run ended and its restart
    /// policy leaves it stopped (it finished, or its policy is `never`).
    case done
    /// Not ordered to run, no thread, and marked failed (it gave up, its
    /// thread is gone, or it hung) until a start order or a retry.
    case failed(reason: String)
    /// Ordered to run; waits for its requirements (or a thread about to launch).
    case waiting
    /// Ordered to run, and this thread runs it; its service is not started yet.
    case running(Run)
    /// Ordered to run, this thread runs it, and its service has started:
    /// what requires it may start.
    case up(Run)
    /// Ordered to run; this thread waits until `until` to start it again (a restart's backoff).
    case backoff(Run, until: ContinuousClock.Instant)
    /// This thread's run ended and it decides what comes next (run again,
    /// stay stopped). `startOrdered`: a start order came meanwhile (a caller
    /// that saw the run's `stopped` event), which the thread honours.
    case ending(Run, startOrdered: Bool)
    /// Ordered to stop; this thread is still ending.
    case stopping(Run)
    /// This thread overran its stop timeout and was abandoned inside the
    /// plugin; nothing may start the service until the call returns.
    case hung(Run, wanted: Bool, reason: String)

    enum Refusal: Error, Equatable {
        case alreadyRunning
        case hung
    }

    /// Ordered to run (whether or not it runs yet).
    var isWanted: Bool {
        switch self {
        case .waiting, .running, .up, .backoff, .ending: true
        case .hung(_, let wanted, _): wanted
        case .idle, .stopped, .done, .failed, .stopping: false
        }
    }

    /// The thread running or stopping the service, if any.
    var run: Run? {
        switch self {
        case .running(let run), .up(let run), .backoff(let run, _), .ending(let run, _), .stopping(let run): run
        case .idle, .stopped, .done, .failed, .waiting, .hung: nil
        }
    }

    /// Why it is marked failed, if it is.
    var failure: String? {
        switch self {
        case .failed(let reason): reason
        case .idle, .stopped, .done, .waiting, .running, .up, .backoff, .ending, .stopping, .hung: nil
        }
    }

    /// A start order.
    mutating func orderStart() throws(Refusal) {
        switch self {
        case .idle, .stopped, .done, .failed, .waiting: self = .waiting
        case .ending(let run, _): self = .ending(run, startOrdered: true)
        case .running, .up, .backoff, .stopping: throw .alreadyRunning
        case .hung: throw .hung
        }
    }

    /// A waiting service's thread was made.
    mutating func launched(_ run: Run) {
        switch self {
        case .waiting: self = .running(run)
        case .idle, .stopped, .done, .failed, .running, .up, .backoff, .ending, .stopping, .hung:
            preconditionFailure("launched a service that was not waiting")
        }
    }

    /// `run`'s service has started. Returns whether `run` is the current thread.
    @discardableResult
    mutating func started(_ run: Run) -> Bool {
        switch self {
        case .running(let current) where current === run, .backoff(let current, _) where current === run:
            self = .up(run)
            return true
        case .idle, .stopped, .done, .failed, .waiting, .running, .up, .backoff, .ending, .stopping, .hung:
            return false
        }
    }

    /// A stop order; the thread, if any, is still ending. A failed service stays failed.
    mutating func orderStop() {
        switch self {
        case .stopped, .done, .waiting: self = .stopped
        case .idle, .failed: break
        case .running(let run), .up(let run), .backoff(let run, _), .ending(let run, _), .stopping(let run):
            self = .stopping(run)
        case .hung(let run, _, let reason): self = .hung(run, wanted: false, reason: reason)
        }
    }

    /// `run` ended and lets go of the service. A service still ordered to
    /// run waits to be started again (its requirement stopped); `staysStopped`
    /// says it ended for good (its policy). Returns whether `run` was the
    /// current thread: a report from an older one changes nothing.
    @discardableResult
    mutating func ended(_ run: Run, staysStopped: Bool = false) -> Bool {
        guard isCurrent(run) else { return false }
        switch self {
        case .stopping: self = .stopped
        case .running, .up, .backoff, .ending: self = staysStopped ? .done : .waiting
        case .idle, .stopped, .done, .failed, .waiting, .hung: return false
        }
        return true
    }

    /// `run` ended and the service gave up (or cannot go on): it is marked
    /// failed. Returns whether `run` was the current thread.
    @discardableResult
    mutating func gaveUp(_ run: Run, reason: String) -> Bool {
        guard isCurrent(run) else { return false }
        self = .failed(reason: reason)
        return true
    }

    /// `run`'s run ended (its `stopped` event is out); its thread now decides what comes next.
    mutating func runEnded(_ run: Run) {
        switch self {
        case .running(let current) where current === run, .up(let current) where current === run,
             .backoff(let current, _) where current === run:
            self = .ending(run, startOrdered: false)
        case .idle, .stopped, .done, .failed, .waiting, .running, .up, .backoff, .ending, .stopping, .hung:
            break
        }
    }

    /// `run`'s thread runs the service again (a restart, or a start ordered
    /// while it was ending), at once or after a backoff that ends at `after`.
    mutating func continues(_ run: Run, after backoff: ContinuousClock.Instant? = nil) {
        switch self {
        case .ending(let current, _) where current === run:
            self = backoff.map { .backoff(run, until: $0) } ?? .running(run)
        case .idle, .stopped, .done, .failed, .waiting, .running, .up, .backoff, .ending, .stopping, .hung:
            break
        }
    }

    /// Whether a start was ordered while the current run was ending.
    var startOrderedWhileEnding: Bool {
        switch self {
        case .ending(_, let startOrdered): startOrdered
        case .idle, .stopped, .done, .failed, .waiting, .running, .up, .backoff, .stopping, .hung: false
        }
    }

    /// `run` overran its stop timeout and is abandoned, for `reason`.
    mutating func abandoned(_ run: Run, reason: String) {
        guard isCurrent(run) else { return }
        self = .hung(run, wanted: isWanted, reason: reason)
    }

    /// The abandoned call of `run` returned at last: a service still ordered
    /// to run waits to start again; one that is not stays failed for its hang.
    mutating func hungCallReturned(_ run: Run) {
        switch self {
        case .hung(let current, let wanted, let reason) where current === run:
            self = wanted ? .waiting : .failed(reason: reason)
        case .idle, .stopped, .done, .failed, .waiting, .running, .up, .backoff, .ending, .stopping, .hung:
            break
        }
    }

    /// The state an operator sees (see ``ServiceStatus/State``).
    var publicState: ServiceStatus.State {
        switch self {
        case .idle: .idle
        case .stopped, .done: .stopped
        case .failed: .failed
        case .waiting, .running: .starting
        case .up: .running
        case .backoff: .backoff
        // Deciding after a run (microseconds), ordered to stop, or abandoned inside the plugin.
        case .ending, .stopping, .hung: .stopping
        }
    }

    private func isCurrent(_ run: Run) -> Bool {
        self.run === run
    }
}
