import Foundation
import Logging

/// Starts, stops and restarts services, and decides what happens when one
/// stops on its own. Reached only through ``Scheduler``.
///
/// Recovery is event driven: the service's own thread asks for a decision
/// the moment a run ends, and restarts at once (or after its backoff) on that
/// same thread. Nothing polls.
///
/// Dependencies: a service runs only while everything it `requires` is
/// started. When a requirement stops, its dependents are stopped first (the
/// deepest first) and started again, in dependency order, once it is back.
final class ServiceManager: @unchecked Sendable {
    enum RestartDecision: Equatable {
        case restart(after: Duration)
        case remainStopped
    }

    /// The manager's record of one service.
    /// Guarded by the manager's lock, hence unchecked.
    private final class Supervision: @unchecked Sendable {
        let service: BaseService
        /// Ordered to run or not, and the thread that runs it.
        var phase: SupervisionPhase<ServiceRunner> = .stopped
        /// Being removed: it takes no more start orders.
        var removing = false
        /// Why it can never start (an unknown requirement, a cycle), if so.
        var blocked: String?
        /// Restart decisions: backoff, retries, the intensity window.
        var restarts: RestartTracker
        /// Whether a wait for a requirement that cannot start was already logged.
        var waitLogged = false

        init(service: BaseService) {
            self.service = service
            restarts = RestartTracker(service.configuration)
        }

        var requires: [String] { service.configuration.requires }
    }

    private enum State {
        case running
        case shutDown
    }

    private let lock = NSLock()
    private var state: State = .running
    private var supervisions: [String: Supervision] = [:]
    /// Who requires whom; its order is the order services were added in, for stable snapshots.
    private var graph = DependencyGraph()
    private var order: [String] { graph.order }
    private var recovery: Bool
    private let logger: Logger
    /// How a user retries a failed service, for messages: "send SIGHUP" in
    /// `servicehost run`, "call retryFailed()" for an embedding program.
    private let retryHint: String
    let events = EventBroadcaster()

    init(recovery: Bool, retryHint: String = "call retryFailed()", logger: Logger) {
        self.recovery = recovery
        self.retryHint = retryHint
        self.logger = logger
    }

    var isRecoveryEnabled: Bool {
        get { lock.withLock { recovery } }
        set {
            lock.withLock {
                recovery = newValue
                for supervision in supervisions.values { Self.refreshPolicy(of: supervision.service, recovery: newValue) }
            }
        }
    }

    // MARK: Orders

    func add(_ service: BaseService) throws(ServiceError) {
        lock.lock()
        defer { lock.unlock() }
        try requireRunningLocked(service.name)
        guard supervisions[service.name] == nil else {
            throw ServiceError(.duplicateService, service: service.name, reason: "a service with this name is already added")
        }
        let events = self.events
        service.eventSink = { events.publish($0) }
        Self.refreshPolicy(of: service, recovery: recovery)
        if service.configuration.watchdog != nil || service.configuration.startTimeout != nil, service.callClock == nil,
           !service.supervisesItsOwnCalls {
            service.callClock = makeThreadCallClock(for: service)
        }
        supervisions[service.name] = Supervision(service: service)
        graph.add(service.name, requires: service.configuration.requires)
    }

    /// Orders a service to run. It starts now, or as soon as everything it
    /// requires has started.
    func start(_ name: String) throws(ServiceError) {
        try start(name, retrying: false)
    }

    /// - Parameter retrying: a retry of a service that gave up: it gets one
    ///   more start, not a whole new restart budget.
    private func start(_ name: String, retrying: Bool) throws(ServiceError) {
        var actions: [Action] = []
        // Declared first, so it runs last: after the lock is released.
        defer { perform(actions) }
        lock.lock()
        defer { lock.unlock() }
        try requireRunningLocked(name)
        let supervision = try supervisionLocked(name)
        guard !supervision.removing else {
            throw ServiceError(.unknownService, service: name, reason: "the service is being removed")
        }
        do {
            try supervision.phase.orderStart()
        } catch .alreadyRunning {
            throw ServiceError(.illegalTransition, service: name, reason: "cannot start: already running")
        } catch {
            throw ServiceError(.illegalTransition, service: name,
                               reason: "cannot start: its previous run is still inside the plugin (hung)")
        }
        if retrying {
            supervision.restarts.retry()
        } else {
            supervision.restarts.orderedStart()
        }
        supervision.service.updateMetadata {
            if !retrying { $0.restarts = 0 }
            $0.failed = false
            $0.failureReason = nil
        }
        resolveDependenciesLocked(into: &actions)
        if let blocked = supervision.blocked {
            throw ServiceError(.illegalTransition, service: name, reason: "cannot start: \(blocked)")
        }
        launchIfReadyLocked(supervision, into: &actions)
    }

    /// Orders every service to run; those whose dependencies are broken are
    /// logged and left stopped.
    func startAll() {
        for name in lock.withLock({ order }) {
            do {
                try start(name)
            } catch {
                // A broken dependency graph was logged once already, as "not started: …".
                if lock.withLock({ supervisions[name]?.blocked != nil }) { continue }
                logger.error("\(error.reason)", metadata: ["service": "\(name)"])
            }
        }
    }

    /// Orders the service to stop, after the services that require it, and
    /// returns once its stop step has run (after the current loop turn
    /// returns) or its stop timeout has passed. Stopping a stopped service does nothing.
    func stop(_ name: String) async throws(ServiceError) {
        let supervision = try unwant(name)
        for dependent in runningDependents(of: name) {
            await stopRun(of: dependent, because: "it requires \(name), which is stopping")
        }
        await stopRun(of: supervision, because: nil)
    }

    func restart(_ name: String) async throws(ServiceError) {
        try await stop(name)
        try start(name)
    }

    func remove(_ name: String) async throws(ServiceError) {
        try markRemoving(name)
        try await stop(name)
        lock.withLock {
            guard supervisions.removeValue(forKey: name) != nil else { return }
            graph.remove(name)
        }
    }

    /// Starts again every service that gave up (SIGHUP's second duty), once each.
    func retryFailed() -> [String] {
        let failed = lock.withLock {
            order.compactMap { supervisions[$0] }
                .filter { $0.phase.isIdle && $0.service.metadata.failed }
                .map(\.service.name)
        }
        var retried: [String] = []
        for name in failed {
            do {
                try start(name, retrying: true)
                retried.append(name)
            } catch {
                logger.error("\(error.reason)", metadata: ["service": "\(name)"])
            }
        }
        return retried
    }

    /// Stops every service, dependents before what they require, and takes no more orders.
    func shutdown() async {
        lock.withLock {
            state = .shutDown
            for supervision in supervisions.values { supervision.phase.orderStop() }
        }
        // In rounds: each round stops, all at once, the running services that
        // no running service requires.
        while true {
            let round: [Supervision] = lock.withLock {
                let running = supervisions.values.filter { $0.phase.run != nil }
                let runningNames = Set(running.map(\.service.name))
                return running.filter { supervision in
                    !graph.dependents(of: supervision.service.name).contains { runningNames.contains($0) }
                }
            }
            if round.isEmpty { break }
            await withTaskGroup(of: Void.self) { group in
                for supervision in round {
                    group.addTask { await self.stopRun(of: supervision, because: nil) }
                }
            }
        }
        events.finish()
    }

    /// Orders every service to stop and takes no more orders, without
    /// waiting: for a scheduler released without a shutdown, so that its
    /// services' threads end rather than run on with nobody to supervise them.
    func orderAllToStop() {
        let services: [BaseService] = lock.withLock {
            state = .shutDown
            for supervision in supervisions.values { supervision.phase.orderStop() }
            return supervisions.values.map(\.service)
        }
        for service in services { service.stopSignal.raise(.ordered) }
        events.finish()
    }

    func service(named name: String) -> BaseService? {
        lock.withLock { supervisions[name]?.service }
    }

    var services: [BaseService] {
        lock.withLock { order.compactMap { supervisions[$0]?.service } }
    }

    // MARK: Stopping one run

    /// Orders the current run of a service to end and waits for it, keeping
    /// whether the service is wanted. A thread that overruns its stop timeout
    /// is abandoned and the service marked hung.
    private func stopRun(of supervision: Supervision, because reason: String?) async {
        guard let runner = lock.withLock({ supervision.phase.run }) else { return }
        let service = supervision.service
        if let reason {
            logger.notice("stopping: \(reason)", metadata: ["service": "\(service.name)"])
        }
        service.stopSignal.raise(.ordered)
        if await runner.finished.wait(timeout: stopDeadline(of: supervision)) {
            lock.withLock { _ = supervision.phase.ended(runner) }
            return
        }
        abandon(runner, of: supervision)
    }

    /// The same as ``stopRun(of:because:)``, for a service's own thread, which
    /// cannot await.
    private func stopRunBlocking(of supervision: Supervision, because reason: String) {
        guard let runner = lock.withLock({ supervision.phase.run }) else { return }
        let service = supervision.service
        logger.notice("stopping: \(reason)", metadata: ["service": "\(service.name)"])
        service.stopSignal.raise(.ordered)
        if runner.finished.waitBlocking(timeout: stopDeadline(of: supervision)) {
            lock.withLock { _ = supervision.phase.ended(runner) }
            return
        }
        abandon(runner, of: supervision)
    }

    /// How long to wait for a run to end after ordering it to: the stop
    /// timeout, with a margin for an isolated service, which enforces the
    /// timeout itself by killing its worker; plus the stop timeouts of its
    /// dependents, which its thread may be stopping one by one at that moment.
    private func stopDeadline(of supervision: Supervision) -> Duration {
        let service = supervision.service
        let own = service.enforcesStopTimeout ? service.configuration.stopTimeout + .seconds(2) : service.configuration.stopTimeout
        let dependentsTime = runningDependents(of: service.name).reduce(Duration.zero) { total, dependent in
            total + dependent.service.configuration.stopTimeout
        }
        return own + dependentsTime
    }

    private func abandon(_ runner: ServiceRunner, of supervision: Supervision) {
        let service = supervision.service
        let timeout = service.configuration.stopTimeout
        let why = "hung: svc_loop did not return within stop_timeout_ms (\(timeout.milliseconds) ms) of the stop; its thread was abandoned"
        lock.withLock {
            supervision.phase.abandoned(runner)
        }
        service.updateMetadata {
            $0.failed = true
            $0.failureReason = why
            $0.record(ServiceFailure(code: -1, message: why))
        }
        logger.error("\(why)", metadata: ["service": "\(service.name)"])
        service.report(.hung(reason: why))
        // If the call ever returns, the runner stops the service cleanly; only then may it start again.
        Task { [weak self] in
            await runner.finished.wait()
            self?.lock.withLock {
                supervision.phase.hungCallReturned(runner)
            }
            self?.logger.notice("the hung call returned; the service can be started again", metadata: ["service": "\(service.name)"])
        }
    }

    // MARK: Reports from service threads

    func serviceStarted(_ service: BaseService) {
        let metadata = service.metadata
        logger.info("started (start #\(metadata.starts)\(metadata.pluginVersion.map { ", version \($0)" } ?? ""))",
                    metadata: ["service": "\(service.name)"])
        service.report(.started(starts: metadata.starts))
        let actions: [Action] = lock.withLock {
            var actions: [Action] = []
            for name in graph.dependents(of: service.name) {
                if let dependent = supervisions[name] { launchIfReadyLocked(dependent, into: &actions) }
            }
            return actions
        }
        perform(actions)
    }

    /// Records how a run ended and decides whether the runner starts the service again.
    func serviceStopped(_ service: BaseService, by runner: ServiceRunner, reason: StopReason, ran: Duration) -> RestartDecision {
        let name = service.name
        switch reason {
        case .ordered, .requested, .finished:
            logger.info("stopped: \(reason)", metadata: ["service": "\(name)"])
        case .failed, .startFailed:
            logger.error("stopped: \(reason)", metadata: ["service": "\(name)"])
        }
        lock.withLock {
            supervisions[name]?.restarts.runEnded()
            // From here a start order (from a caller that saw the `stopped`
            // event) is taken, and honoured below.
            supervisions[name]?.phase.runEnded(runner)
        }
        service.report(.stopped(reason))
        if case .ordered = reason { return .remainStopped }

        // What requires this service cannot keep running without it.
        for dependent in runningDependents(of: name) {
            stopRunBlocking(of: dependent, because: "it requires \(name), which stopped")
        }

        let (decision, actions) = lock.withLock { decideAfterRunLocked(of: service, by: runner, reason: reason, ran: ran) }
        perform(actions)
        return decision
    }

    /// What the runner does after a run that ended for `reason` (not an
    /// ordered stop), with the state changed here, under the lock, in one
    /// step; and what to log and publish once the lock is released.
    private func decideAfterRunLocked(of service: BaseService, by runner: ServiceRunner, reason: StopReason,
                                      ran: Duration) -> (RestartDecision, [Action]) {
        let name = service.name
        guard let supervision = supervisions[name], supervision.phase.run === runner, case .running = state,
              service.stopSignal.request != .ordered else {
            return (.remainStopped, [])
        }
        if supervision.phase.startOrderedWhileEnding {
            // Ordered while the run was ending: the order already reset the
            // counters, as any start order does; the thread runs it again.
            supervision.phase.continues(runner)
            return (.restart(after: .zero), [.log(.info, "starting again, as ordered while its run was ending", service: name)])
        }
        let policy = service.configuration.restart ?? (recovery ? .always : .never)
        let decision = supervision.restarts.decide(
            after: reason, ran: ran, now: .now, policy: policy, recoveryOff: !recovery && service.configuration.restart == nil,
            stopsForGood: service.stopsForGood(after: reason), retryHint: retryHint)
        switch decision {
        case .restart(let restart, let attempt, let delay):
            supervision.phase.continues(runner)
            service.updateMetadata { $0.restarts = restart }
            return (.restart(after: delay), [
                .log(.info, "restarting (attempt #\(attempt))\(delay > .zero ? " in \(delay.milliseconds) ms" : "")", service: name),
                .publish(service, .restarting(restart: restart, delay: delay)),
            ])
        case .remainStopped(let why):
            supervision.phase.ended(runner, staysStopped: true)
            return (.remainStopped, [.log(.info, why, service: name)])
        case .giveUp(let why):
            supervision.phase.ended(runner, staysStopped: true)
            // Marked failed in the same critical section that lets go of the
            // runner, so that a start order cannot slip in between and be
            // marked failed afterwards.
            service.updateMetadata {
                $0.failed = true
                $0.failureReason = why
            }
            return (.remainStopped, [.log(.error, "failed: \(why)", service: name), .publish(service, .failed(reason: why))]
                + waitingDependentsLocked(of: name).map { .log(.warning, "waiting for '\(name)', which failed: \(why)", service: $0) })
        }
    }

    /// The services ordered to run that wait for `name` to start.
    private func waitingDependentsLocked(of name: String) -> [String] {
        graph.dependents(of: name).filter { dependent in
            guard let supervision = supervisions[dependent] else { return false }
            if case .waiting = supervision.phase { return true } else { return false }
        }
    }

    /// `runner` cannot go on: no thread could be created for it, the plugin
    /// ended its thread (`pthread_exit`), or (a host bug) a transition was
    /// illegal. The service is marked failed, as when it gives up, and a
    /// start order clears that as usual.
    func runnerFailed(_ service: BaseService, _ runner: ServiceRunner, reason: String) {
        let name = service.name
        let actions: [Action] = lock.withLock {
            guard let supervision = supervisions[name], supervision.phase.ended(runner, staysStopped: true) else {
                return []
            }
            service.updateMetadata {
                $0.failed = true
                $0.failureReason = reason
                $0.record(ServiceFailure(code: -1, message: reason))
            }
            return [.log(.error, "failed: \(reason)", service: name), .publish(service, .failed(reason: reason))]
                + waitingDependentsLocked(of: name).map { .log(.warning, "waiting for '\(name)', which failed: \(reason)", service: $0) }
        }
        perform(actions)
    }

    // MARK: Dependencies

    /// The running services that require `name`, directly or through others,
    /// deepest first: the order to stop them in.
    private func runningDependents(of name: String) -> [Supervision] {
        lock.withLock {
            graph.dependentsDeepestFirst(of: name).compactMap { supervisions[$0] }.filter { $0.phase.run != nil }
        }
    }

    /// Starts a wanted service's run when everything it requires has started.
    private func launchIfReadyLocked(_ supervision: Supervision, into actions: inout [Action]) {
        guard case .waiting = supervision.phase, supervision.blocked == nil, case .running = state else { return }
        // A requirement that is stopping by order may still be starting on
        // its own for a moment; only one that is wanted counts as up.
        for requirement in supervision.requires {
            guard let required = supervisions[requirement], case .running = required.phase,
                  required.service.currentState == .started else {
                if !supervision.waitLogged, let required = supervisions[requirement], let why = Self.cannotStart(required) {
                    supervision.waitLogged = true
                    actions.append(.log(.warning, "waiting for '\(requirement)', which \(why)", service: supervision.service.name))
                }
                return
            }
        }
        supervision.waitLogged = false
        let service = supervision.service
        service.stopSignal.reset()
        let delay = service.metadata.starts == 0 ? service.configuration.delay : .zero
        let runner = ServiceRunner(service: service, manager: self, initialDelay: delay)
        supervision.phase.launched(runner)
        actions.append(.launch(runner))
    }

    /// Why a requirement will not start by itself, if so.
    private static func cannotStart(_ required: Supervision) -> String? {
        if let blocked = required.blocked { return "cannot start: \(blocked)" }
        let metadata = required.service.metadata
        if required.phase.isIdle, !required.phase.isWanted, metadata.failed { return "failed: \(metadata.failureReason ?? "unknown reason")" }
        return nil
    }

    /// Marks the services that can never start: an unknown requirement, or a
    /// cycle, and logs each once with the services involved.
    private func resolveDependenciesLocked(into actions: inout [Action]) {
        for name in order {
            guard let supervision = supervisions[name] else { continue }
            let before = supervision.blocked
            supervision.blocked = blockingProblemLocked(supervision)
            if let problem = supervision.blocked, problem != before {
                actions.append(.log(.error, "not started: \(problem)", service: name))
            }
        }
    }

    // MARK: Actions

    /// What the manager does once its lock is released: starting a thread
    /// and logging never happen under the lock.
    private enum Action {
        case launch(ServiceRunner)
        case log(Logger.Level, String, service: String)
        case publish(BaseService, ServiceEvent.Kind)
    }

    private func perform(_ actions: [Action]) {
        for action in actions {
            switch action {
            case .launch(let runner):
                runner.launch()
            case .log(let level, let message, let service):
                logger.log(level: level, "\(message)", metadata: ["service": "\(service)"])
            case .publish(let service, let kind):
                service.report(kind)
            }
        }
    }

    private func blockingProblemLocked(_ supervision: Supervision) -> String? {
        graph.problem(of: supervision.service.name)
    }

    // MARK: Helpers

    private func markRemoving(_ name: String) throws(ServiceError) {
        lock.lock()
        defer { lock.unlock() }
        try supervisionLocked(name).removing = true
    }

    private func unwant(_ name: String) throws(ServiceError) -> Supervision {
        lock.lock()
        defer { lock.unlock() }
        let supervision = try supervisionLocked(name)
        supervision.phase.orderStop()
        return supervision
    }

    /// Whether ``shutdown()`` has begun: nothing is added or started any more.
    var hasShutDown: Bool {
        lock.withLock {
            switch state {
            case .running: false
            case .shutDown: true
            }
        }
    }

    private func requireRunningLocked(_ name: String) throws(ServiceError) {
        switch state {
        case .running: return
        case .shutDown: throw ServiceError(.shutDown, service: name, reason: "the scheduler has shut down")
        }
    }

    private func supervisionLocked(_ name: String) throws(ServiceError) -> Supervision {
        guard let supervision = supervisions[name] else {
            throw ServiceError(.unknownService, service: name, reason: "no service with this name")
        }
        return supervision
    }

    private static func refreshPolicy(of service: BaseService, recovery: Bool) {
        let policy = service.configuration.restart ?? (recovery ? .always : .never)
        service.updateMetadata { $0.restartPolicy = policy }
    }

    /// A watchdog clock for a service whose calls run in this process: an
    /// overrun can only be recorded and logged, not cut short.
    private func makeThreadCallClock(for service: BaseService) -> CallClock {
        let configuration = service.configuration
        let logger = self.logger
        return CallClock(loopLimit: configuration.watchdog, createLimit: configuration.startTimeout) { [weak service] call, elapsed in
            guard let service else { return }
            let why = switch call {
            case .loop: "hung: svc_loop has run for \(elapsed.milliseconds) ms (watchdog_ms = \(configuration.watchdog?.milliseconds ?? 0)); in thread isolation it cannot be cut short"
            case .create: "hung: svc_create has run for \(elapsed.milliseconds) ms (start_timeout_ms = \(configuration.startTimeout?.milliseconds ?? 0)); in thread isolation it cannot be cut short"
            }
            service.updateMetadata { $0.record(ServiceFailure(code: -1, message: why)) }
            logger.error("\(why)", metadata: ["service": "\(service.name)"])
            service.report(.hung(reason: why))
        }
    }
}
