import Logging

/// Every decision of the supervisor, for all its services, as a pure value:
/// orders (start, stop, remove, shut down) and reports from services' threads
/// (started, run ended, abandoned) go in; what to do comes out as actions
/// (launch a thread, stop a run and wait, log, publish, update metadata).
/// No locks, no threads, no clock: ``ServiceManager`` keeps one under its
/// lock and performs the actions after releasing it, and every interleaving
/// of orders and reports is tested as a sequence of calls.
///
/// Generic over the run (a ``ServiceRunner`` in the host), which the machine
/// only creates (through `makeRun`) and compares by identity.
struct SupervisorStateMachine<Run: AnyObject> {
    /// What a service's thread does after a run that ended.
    enum RestartDecision: Equatable {
        case restart(after: Duration)
        case remainStopped
    }

    /// What the manager does for a transition.
    enum Action {
        /// Start the run's thread (after the lock is released).
        case launch(Run)
        /// Order the run to end and wait for it, at most its
        /// ``stopDeadline(of:)`` taken when the wait begins; then report
        /// ``runFinished(_:_:)`` or ``runAbandoned(_:_:)``. Stops come in the
        /// order to perform them: dependents, deepest first, before what they
        /// require.
        case stop(Run, service: String, because: String?)
        /// `event`: the lifecycle event the line reports, for its structured fields.
        case log(Logger.Level, String, service: String, event: LifecycleEvent? = nil)
        case publish(service: String, ServiceEvent.Kind)
        /// Applied while the lock is still held, so that nobody sees a state
        /// and metadata that disagree (a start order clearing a failure that
        /// is only then being recorded).
        case update(service: String, MetadataChange)
    }

    enum MetadataChange: Equatable {
        /// Ordered to start: no longer failed; a restart count from zero,
        /// unless it is a retry (one more start).
        case startOrdered(retrying: Bool)
        /// The host restarts it, for `cause`; `restarts` counts since the last order.
        case restarting(restarts: Int, cause: RestartCause)
        /// Started again for `cause` outside the restart policy (an operator's
        /// or a reload's restart, a hung call that returned), counted as a restart.
        case restartCounted(RestartCause)
        /// Failed for `reason`; `recorded` adds it to the service's errors.
        case failed(reason: String, recorded: Bool)
    }

    /// What the machine keeps of one service.
    private struct Member {
        var phase: SupervisionPhase<Run> = .idle {
            didSet {
                if phase.publicState != oldValue.publicState { since = clock() }
            }
        }
        /// When the service entered the state an operator sees.
        private(set) var since: ContinuousClock.Instant
        /// How its last run ended.
        var lastExit: StopReason?
        let clock: @Sendable () -> ContinuousClock.Instant
        var restarts: RestartTracker
        let requires: [String]
        let restartPolicy: RestartPolicy?
        let stopTimeout: Duration
        /// How long a stop of it may take: its stop timeout, plus a margin
        /// for a service that enforces the timeout itself (kills a worker).
        let stopAllowance: Duration
        /// Being removed: it takes no more start orders.
        var removing = false
        /// Logged already, so not again: the service's dependency problem,
        /// and a wait for a requirement that cannot start.
        var loggedProblem: String?
        var loggedWait = false
    }

    private enum State {
        case running
        case shutDown
    }

    private var members: [String: Member] = [:]
    /// Who requires whom; its order is the order services were added in.
    private var graph = DependencyGraph()
    private var state = State.running
    /// Whether dependency problems changed since they were last logged.
    private var graphChanged = false
    /// Whether a service without a restart policy of its own restarts.
    var recovery: Bool
    /// How a user retries a failed service, for messages.
    let retryHint: String
    /// Stamps state changes (``status(of:)``); a parameter so that tests set the time.
    private let clock: @Sendable () -> ContinuousClock.Instant

    init(recovery: Bool, retryHint: String, clock: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.recovery = recovery
        self.retryHint = retryHint
        self.clock = clock
    }

    /// The services, in the order they were added.
    var names: [String] { graph.order }

    var hasShutDown: Bool {
        switch state {
        case .running: false
        case .shutDown: true
        }
    }

    /// The phase of a service, for tests and snapshots.
    func phase(of name: String) -> SupervisionPhase<Run>? { members[name]?.phase }

    /// The restart policy in force for a service with `configured` (none of its own: the host's recovery).
    func policy(configured: RestartPolicy?) -> RestartPolicy {
        configured ?? (recovery ? .always : .never)
    }

    /// Why a service can never start (an unknown requirement, a cycle), if so.
    func dependencyProblem(of name: String) -> String? { graph.problem(of: name) }

    /// Whether a service is stopped by an order (or was never started): a
    /// reload leaves it so, as `systemctl stop` does; its next start loads
    /// whatever its file is then. One its policy left stopped is not.
    func isStoppedByOrder(_ name: String) -> Bool {
        switch members[name]?.phase {
        case .idle?, .stopped?: true
        default: false
        }
    }

    /// Whether a service's thread was abandoned inside the plugin and has not come back.
    func isHung(_ name: String) -> Bool {
        if case .hung? = members[name]?.phase { true } else { false }
    }

    /// The services that gave up, for a retry.
    var failedServices: [String] {
        names.filter { members[$0]?.phase.failure != nil }
    }

    /// How one service stands, as an operator sees it.
    struct Status: Equatable {
        var state: ServiceStatus.State
        /// When it entered `state`.
        var since: ContinuousClock.Instant
        /// When a backoff ends, in ``ServiceStatus/State/backoff``.
        var backoffUntil: ContinuousClock.Instant?
        var lastExit: StopReason?
        /// Why it failed, in ``ServiceStatus/State/failed``.
        var failure: String?
        /// The requirements it waits for to start, if any.
        var waitingFor: [String]
    }

    /// How many services are in each state, without building their statuses.
    var stateCounts: [ServiceStatus.State: Int] {
        members.values.reduce(into: [:]) { counts, member in counts[member.phase.publicState, default: 0] += 1 }
    }

    func status(of name: String) -> Status? {
        guard let member = members[name] else { return nil }
        let backoffUntil: ContinuousClock.Instant? = if case .backoff(_, let until) = member.phase { until } else { nil }
        let waitingFor: [String] = if case .waiting = member.phase { member.requires.filter { !isUp($0) } } else { [] }
        return Status(state: member.phase.publicState, since: member.since, backoffUntil: backoffUntil,
                      lastExit: member.lastExit, failure: member.phase.failure, waitingFor: waitingFor)
    }

    // MARK: Orders

    mutating func add(_ name: String, configuration: ServiceConfiguration, stopMargin: Duration = .zero) throws(ServiceError) {
        try requireRunning(name)
        guard members[name] == nil else {
            throw ServiceError(.duplicateService, service: name, reason: "a service with this name is already added")
        }
        members[name] = Member(
            since: clock(), clock: clock,
            restarts: RestartTracker(configuration), requires: configuration.requires, restartPolicy: configuration.restart,
            stopTimeout: configuration.stopTimeout, stopAllowance: configuration.stopTimeout + stopMargin)
        graph.add(name, requires: configuration.requires)
        graphChanged = true
    }

    /// A start order: the service runs now, or once everything it requires
    /// has started. A service whose dependencies are broken is ordered to
    /// run all the same (it starts if they are mended) and refused with the
    /// reason; `actions` gets what to do either way.
    /// - Parameter retrying: a retry of a service that gave up: it gets one
    ///   more start, not a whole new restart budget.
    mutating func orderStart(_ name: String, retrying: Bool = false, makeRun: (String) -> Run,
                             into actions: inout [Action]) throws(ServiceError) {
        try requireRunning(name)
        guard var member = members[name] else { throw Self.unknown(name) }
        guard !member.removing else {
            throw ServiceError(.unknownService, service: name, reason: "the service is being removed")
        }
        do {
            try member.phase.orderStart()
        } catch .alreadyRunning {
            throw ServiceError(.illegalTransition, service: name, reason: "cannot start: already running")
        } catch {
            throw ServiceError(.illegalTransition, service: name,
                               reason: "cannot start: its previous run is still inside the plugin (hung)")
        }
        if retrying {
            member.restarts.retry()
        } else {
            member.restarts.orderedStart()
        }
        members[name] = member
        actions.append(.update(service: name, .startOrdered(retrying: retrying)))
        actions += logDependencyProblems()
        if let problem = graph.problem(of: name) {
            throw ServiceError(.illegalTransition, service: name, reason: "cannot start: \(problem)")
        }
        actions += launchIfReady(name, makeRun: makeRun)
    }

    /// A stop order: the service is no longer wanted. Returns the stops to
    /// perform one after another: its running dependents, deepest first
    /// (they stay wanted and start again once it is back), then its own run.
    mutating func orderStop(_ name: String) throws(ServiceError) -> [Action] {
        guard members[name] != nil else { throw Self.unknown(name) }
        members[name]?.phase.orderStop()
        var stops = stopsOfDependents(of: name, because: "it requires \(name), which is stopping")
        if let run = members[name]?.phase.run {
            stops.append(.stop(run, service: name, because: nil))
        }
        return stops
    }

    /// A removal: a stop order after which the service takes no more orders;
    /// ``removed(_:)`` forgets it once the stops are performed.
    mutating func orderRemoval(_ name: String) throws(ServiceError) -> [Action] {
        guard members[name] != nil else { throw Self.unknown(name) }
        members[name]?.removing = true
        return try orderStop(name)
    }

    mutating func removed(_ name: String) {
        guard members.removeValue(forKey: name) != nil else { return }
        graph.remove(name)
        graphChanged = true
    }

    /// The shutdown order: every service is ordered to stop, and no order is
    /// taken any more. ``shutdownRound()`` then says what to stop.
    mutating func beginShutdown() {
        state = .shutDown
        for name in names { members[name]?.phase.orderStop() }
    }

    /// The next round of a shutdown: the runs that no running service
    /// requires, to stop all at once. Empty when nothing runs any more.
    func shutdownRound() -> [Action] {
        let running = Set(names.filter { members[$0]?.phase.run != nil })
        return names.compactMap { name in
            guard let run = members[name]?.phase.run,
                  !graph.dependents(of: name).contains(where: running.contains) else { return nil }
            return .stop(run, service: name, because: nil)
        }
    }

    // MARK: Reports from a service's thread

    /// `run`'s service has started: what requires it may start now.
    mutating func runStarted(_ name: String, _ run: Run, makeRun: (String) -> Run) -> [Action] {
        guard modify(name, { $0.phase.started(run) }) == true else { return [] }
        let dependents = graph.dependents(of: name)
        return dependents.isEmpty ? [] : dependents.flatMap { launchIfReady($0, makeRun: makeRun) }
    }

    /// `run`'s run ended for `reason`. Unless it was ordered to end, what
    /// requires the service cannot keep running without it: returns the
    /// stops of its running dependents, to perform before ``decideAfterRun``.
    mutating func runEnded(_ name: String, _ run: Run, reason: StopReason) -> [Action] {
        let current: Bool? = modify(name) { member in
            // A run abandoned earlier that ends at last is no longer the service's concern.
            guard member.phase.run === run else { return false }
            member.restarts.runEnded()
            member.lastExit = reason
            // From here a start order (from a caller that saw the `stopped`
            // event) is taken, and honoured by the decision.
            member.phase.runEnded(run)
            return true
        }
        guard current == true else { return [] }
        if case .ordered = reason { return [] }
        return graph.dependents(of: name).isEmpty ? [] : stopsOfDependents(of: name, because: "it requires \(name), which stopped")
    }

    /// What `run`'s thread does after a run that ended for `reason`:
    /// restart (after a backoff) or stay stopped, possibly giving up.
    /// - Parameters:
    ///   - stopOrdered: a stop order is pending for the service.
    ///   - stopsForGood: the service cannot start until its file changes.
    mutating func decideAfterRun(_ name: String, _ run: Run, reason: StopReason, ran: Duration,
                                 now: ContinuousClock.Instant, stopOrdered: Bool,
                                 stopsForGood: Bool) -> (RestartDecision, [Action]) {
        if case .ordered = reason { return (.remainStopped, []) }
        guard case .running = state, !stopOrdered else { return (.remainStopped, []) }
        let (recovery, retryHint) = (recovery, retryHint)
        // Decided on the member in place (no copy of it: this is every restart's path).
        let outcome: (RestartDecision, [Action], failure: String?)? = modify(name) { member in
            // A stop order pending (the phase says so before the signal is raised,
            // when dependents are stopped first) ends the run for good.
            guard member.phase.run === run, member.phase.isWanted else { return nil }
            return Self.decide(&member, name, run, reason: reason, ran: ran, now: now, recovery: recovery,
                               stopsForGood: stopsForGood, retryHint: retryHint)
        } ?? nil
        guard let (decision, actions, failure) = outcome else { return (.remainStopped, []) }
        return (decision, failure.map { actions + failureActions(of: name, reason: $0) } ?? actions)
    }

    /// The decision of ``decideAfterRun``, on the member itself; `failure`
    /// says the service gave up, for what follows a failure.
    private static func decide(_ member: inout Member, _ name: String, _ run: Run, reason: StopReason, ran: Duration,
                               now: ContinuousClock.Instant, recovery: Bool, stopsForGood: Bool,
                               retryHint: String) -> (RestartDecision, [Action], failure: String?) {
        if member.phase.startOrderedWhileEnding {
            // Ordered while the run was ending: the order already reset the
            // counters, as any start order does; the thread runs it again.
            member.phase.continues(run)
            return (.restart(after: .zero), [.log(.info, "starting again, as ordered while its run was ending", service: name)], nil)
        }
        let policy = member.restartPolicy ?? (recovery ? .always : .never)
        let decision = member.restarts.decide(
            after: reason, ran: ran, now: now, policy: policy,
            recoveryOff: !recovery && member.restartPolicy == nil, stopsForGood: stopsForGood, retryHint: retryHint)
        switch decision {
        case .restart(let restart, let attempt, let delay):
            member.phase.continues(run, after: delay > .zero ? now + delay : nil)
            let cause = RestartCause(after: reason)
            return (.restart(after: delay), [
                .update(service: name, .restarting(restarts: restart, cause: cause)),
                .log(.info, "restarting (attempt #\(attempt))\(delay > .zero ? " in \(delay.milliseconds) ms" : "")", service: name,
                     event: .restarting(attempt: attempt, delay: delay, cause: cause)),
                .publish(service: name, .restarting(restart: restart, delay: delay)),
            ], nil)
        case .remainStopped(let why):
            member.phase.ended(run, staysStopped: true)
            return (.remainStopped, [.log(.info, why, service: name)], nil)
        case .giveUp(let why):
            member.phase.gaveUp(run, reason: why)
            return (.remainStopped, [.update(service: name, .failed(reason: why, recorded: false))], why)
        }
    }

    /// Changes one member in place, without copying it out and back (each
    /// copy retains and releases every field); `nil` if there is no such service.
    private mutating func modify<Result>(_ name: String, _ body: (inout Member) -> Result) -> Result? {
        guard let index = members.index(forKey: name) else { return nil }
        return body(&members.values[index])
    }

    /// A stop of `run` was waited for, and it ended.
    mutating func runFinished(_ name: String, _ run: Run) {
        members[name]?.phase.ended(run)
    }

    /// A stop of `run` was waited for in vain: its thread is abandoned inside
    /// the plugin and the service is marked hung until the call returns.
    mutating func runAbandoned(_ name: String, _ run: Run) -> [Action] {
        guard let member = members[name], member.phase.run === run else { return [] }
        let why = "hung: svc_loop did not return within stop_timeout_ms (\(member.stopTimeout.milliseconds) ms) "
            + "of the stop; its thread was abandoned"
        members[name]?.phase.abandoned(run, reason: why)
        return [
            .update(service: name, .failed(reason: why, recorded: true)),
            .log(.error, why, service: name, event: .hung(reason: why)),
            .publish(service: name, .hung(reason: why)),
        ]
    }

    /// The abandoned call of `run` returned: the service can start again,
    /// and does if it is still ordered to run.
    mutating func hungCallReturned(_ name: String, _ run: Run, makeRun: (String) -> Run) -> [Action] {
        guard case .hung(let current, _, _)? = members[name]?.phase, current === run else { return [] }
        members[name]?.phase.hungCallReturned(run)
        guard case .waiting? = members[name]?.phase else {
            return [.log(.notice, "the hung call returned; the service can be started again", service: name)]
        }
        // Still ordered to run: it starts again as a retry would, one more
        // start, so that a service that hangs again soon gives up.
        members[name]?.restarts.retry()
        return [
            .log(.notice, "the hung call returned; starting it again, as it is still ordered to run", service: name),
            .update(service: name, .startOrdered(retrying: true)),
            .update(service: name, .restartCounted(.watchdog)),
        ] + launchIfReady(name, makeRun: makeRun)
    }

    /// `run` cannot go on: no thread could be created for it, the plugin
    /// ended its thread (`pthread_exit`), or (a host bug) a transition was
    /// illegal. The service is marked failed, as when it gives up, and a
    /// start order clears that as usual.
    mutating func runnerFailed(_ name: String, _ run: Run, reason: String) -> [Action] {
        guard members[name]?.phase.gaveUp(run, reason: reason) == true else { return [] }
        return [.update(service: name, .failed(reason: reason, recorded: true))]
            + failureActions(of: name, reason: reason)
    }

    // MARK: Dependencies

    /// Starts a wanted service's run when everything it requires has started.
    private mutating func launchIfReady(_ name: String, makeRun: (String) -> Run) -> [Action] {
        guard var member = members[name], case .waiting = member.phase, case .running = state,
              graph.problem(of: name) == nil else { return [] }
        defer { members[name] = member }
        for requirement in member.requires {
            guard isUp(requirement) else {
                if !member.loggedWait, let why = cannotStart(requirement) {
                    member.loggedWait = true
                    return [.log(.warning, "waiting for '\(requirement)', which \(why)", service: name)]
                }
                return []
            }
        }
        member.loggedWait = false
        let run = makeRun(name)
        member.phase.launched(run)
        return [.launch(run)]
    }

    /// Whether `name` has started and so has everything it requires, through
    /// every level: a requirement whose own requirement is being stopped is
    /// about to be stopped too, so nothing new may lean on it.
    private func isUp(_ name: String, visited: Set<String> = []) -> Bool {
        guard let member = members[name], case .up = member.phase, !visited.contains(name) else { return false }
        let visited = visited.union([name])
        return member.requires.allSatisfy { isUp($0, visited: visited) }
    }

    /// Why a requirement will not start by itself, if so.
    private func cannotStart(_ name: String) -> String? {
        if let problem = graph.problem(of: name) { return "cannot start: \(problem)" }
        if let failure = members[name]?.phase.failure { return "failed: \(failure)" }
        return nil
    }

    /// Logs each service that can never start (an unknown requirement, a
    /// cycle) once, with the services involved; again only if it changes.
    private mutating func logDependencyProblems() -> [Action] {
        guard graphChanged else { return [] }
        graphChanged = false
        var actions: [Action] = []
        for name in names {
            let problem = graph.problem(of: name)
            if let problem, problem != members[name]?.loggedProblem {
                actions.append(.log(.error, "not started: \(problem)", service: name))
            }
            members[name]?.loggedProblem = problem
        }
        return actions
    }

    /// Stops of the running services that require `name`, directly or
    /// through others, deepest first.
    private func stopsOfDependents(of name: String, because reason: String) -> [Action] {
        graph.dependentsDeepestFirst(of: name).compactMap { dependent in
            members[dependent]?.phase.run.map {
                .stop($0, service: dependent, because: reason)
            }
        }
    }

    /// How long to wait, from now, for a run to end after ordering it to:
    /// its stop allowance, plus those of its dependents still running, which
    /// its thread may be stopping one by one at that moment (a run that ended
    /// on its own stops them before it decides what comes next).
    func stopDeadline(of name: String) -> Duration {
        graph.dependentsDeepestFirst(of: name).reduce(members[name]?.stopAllowance ?? .zero) { total, dependent in
            guard let member = members[dependent], member.phase.run != nil else { return total }
            return total + member.stopAllowance
        }
    }

    /// What follows a failure: its log line and event, and a warning for
    /// each service that waits for it.
    private func failureActions(of name: String, reason: String) -> [Action] {
        [.log(.error, "failed: \(reason)", service: name, event: .failed(reason: reason)),
         .publish(service: name, .failed(reason: reason))]
            + graph.dependents(of: name).compactMap { dependent in
                guard case .waiting? = members[dependent]?.phase else { return nil }
                return .log(.warning, "waiting for '\(name)', which failed: \(reason)", service: dependent)
            }
    }

    private func requireRunning(_ name: String) throws(ServiceError) {
        switch state {
        case .running: return
        case .shutDown: throw ServiceError(.shutDown, service: name, reason: "the scheduler has shut down")
        }
    }

    private static func unknown(_ name: String) -> ServiceError {
        ServiceError(.unknownService, service: name, reason: "no service with this name")
    }
}

extension SupervisorStateMachine.Action: Sendable where Run: Sendable {}
