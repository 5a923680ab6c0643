/// Where one service stands with its supervisor: a pure value, changed only
/// through the transitions below, so that "ordered to run" and "has a thread"
/// can never disagree. Generic over the run (a ``ServiceRunner`` in the host)
/// so that its transitions are tested without threads.
enum SupervisionPhase<Run: AnyObject> {
    /// Not ordered to run, and no thread.
    case stopped
    /// Ordered to run; waits for its requirements (or a thread about to launch).
    case waiting
    /// Ordered to run, and this thread runs it.
    case running(Run)
    /// This thread's run ended and it decides what comes next (run again,
    /// stay stopped). `startOrdered`: a start order came meanwhile (a caller
    /// that saw the run's `stopped` event), which the thread honours.
    case ending(Run, startOrdered: Bool)
    /// Ordered to stop; this thread is still ending.
    case stopping(Run)
    /// This thread overran its stop timeout and was abandoned inside the
    /// plugin; nothing may start the service until the call returns.
    case hung(Run, wanted: Bool)

    enum Refusal: Error, Equatable {
        case alreadyRunning
        case hung
    }

    /// Ordered to run (whether or not it runs yet).
    var isWanted: Bool {
        switch self {
        case .waiting, .running, .ending: true
        case .hung(_, let wanted): wanted
        case .stopped, .stopping: false
        }
    }

    /// The thread running or stopping the service, if any.
    var run: Run? {
        switch self {
        case .running(let run), .ending(let run, _), .stopping(let run): run
        case .stopped, .waiting, .hung: nil
        }
    }

    /// No thread at all, neither live nor hung.
    var isIdle: Bool {
        switch self {
        case .stopped, .waiting: true
        case .running, .ending, .stopping, .hung: false
        }
    }

    /// A start order.
    mutating func orderStart() throws(Refusal) {
        switch self {
        case .stopped, .waiting: self = .waiting
        case .ending(let run, _): self = .ending(run, startOrdered: true)
        case .running, .stopping: throw .alreadyRunning
        case .hung: throw .hung
        }
    }

    /// A waiting service's thread was made.
    mutating func launched(_ run: Run) {
        switch self {
        case .waiting: self = .running(run)
        case .stopped, .running, .ending, .stopping, .hung: preconditionFailure("launched a service that was not waiting")
        }
    }

    /// A stop order; the thread, if any, is still ending.
    mutating func orderStop() {
        switch self {
        case .stopped, .waiting: self = .stopped
        case .running(let run), .ending(let run, _), .stopping(let run): self = .stopping(run)
        case .hung(let run, _): self = .hung(run, wanted: false)
        }
    }

    /// `run` ended and lets go of the service. A service still ordered to
    /// run waits to be started again (its requirement stopped); `staysStopped`
    /// says it ended for good (its policy, giving up). Returns whether `run`
    /// was the current thread: a report from an older one changes nothing.
    @discardableResult
    mutating func ended(_ run: Run, staysStopped: Bool = false) -> Bool {
        switch self {
        case .running(let current) where current === run, .ending(let current, _) where current === run:
            self = staysStopped ? .stopped : .waiting
            return true
        case .stopping(let current) where current === run:
            self = .stopped
            return true
        case .stopped, .waiting, .running, .ending, .stopping, .hung:
            return false
        }
    }

    /// `run`'s run ended (its `stopped` event is out); its thread now decides what comes next.
    mutating func runEnded(_ run: Run) {
        switch self {
        case .running(let current) where current === run:
            self = .ending(run, startOrdered: false)
        case .stopped, .waiting, .running, .ending, .stopping, .hung:
            break
        }
    }

    /// `run`'s thread runs the service again (a restart, or a start ordered while it was ending).
    mutating func continues(_ run: Run) {
        switch self {
        case .ending(let current, _) where current === run:
            self = .running(run)
        case .stopped, .waiting, .running, .ending, .stopping, .hung:
            break
        }
    }

    /// Whether a start was ordered while the current run was ending.
    var startOrderedWhileEnding: Bool {
        switch self {
        case .ending(_, let startOrdered): startOrdered
        case .stopped, .waiting, .running, .stopping, .hung: false
        }
    }

    /// `run` overran its stop timeout and is abandoned.
    mutating func abandoned(_ run: Run) {
        switch self {
        case .running(let current) where current === run, .ending(let current, _) where current === run:
            self = .hung(run, wanted: true)
        case .stopping(let current) where current === run:
            self = .hung(run, wanted: false)
        case .stopped, .waiting, .running, .ending, .stopping, .hung:
            break
        }
    }

    /// The abandoned call of `run` returned at last.
    mutating func hungCallReturned(_ run: Run) {
        switch self {
        case .hung(let current, let wanted) where current === run:
            self = wanted ? .waiting : .stopped
        case .stopped, .waiting, .running, .ending, .stopping, .hung:
            break
        }
    }
}
