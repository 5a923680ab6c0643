import Foundation
import Logging
import Synchronization

/// Starts, stops and restarts services, and decides what happens when one
/// stops on its own. Reached only through ``Scheduler``.
///
/// A thin orchestrator: every decision is a transition of the pure
/// ``SupervisorStateMachine``, made under one lock; the actions it returns
/// (launch a thread, stop a run and wait, log, publish) are performed after
/// the lock is released.
///
/// Recovery is event driven: the service's own thread asks for a decision
/// the moment a run ends, and restarts at once (or after its backoff) on that
/// same thread. Nothing polls.
///
/// Dependencies: a service runs only while everything it `requires` is
/// started. When a requirement stops, its dependents are stopped first (the
/// deepest first) and started again, in dependency order, once it is back.
final class ServiceManager: @unchecked Sendable {
    typealias Machine = SupervisorStateMachine<ServiceRunner>
    typealias RestartDecision = Machine.RestartDecision
    private typealias Action = Machine.Action

    private let lock = NSLock()
    /// Guarded by `lock`, as is `members`.
    private var machine: Machine
    /// The service objects behind the machine's names.
    private var members: [String: BaseService] = [:]
    /// The services an overlapping reload is under way for (its new version
    /// may still be in `svc_create` after the reload stopped waiting for it).
    private var overlapping: Set<String> = []
    private let logger: Logger
    let events = EventBroadcaster()

    init(recovery: Bool, retryHint: String = "call retryFailed()", logger: Logger) {
        machine = Machine(recovery: recovery, retryHint: retryHint)
        self.logger = logger
    }

    var isRecoveryEnabled: Bool {
        get { lock.withLock { machine.recovery } }
        set {
            lock.withLock {
                machine.recovery = newValue
                for service in members.values { refreshPolicyLocked(of: service) }
            }
        }
    }

    // MARK: Orders

    func add(_ service: BaseService) throws(ServiceError) {
        lock.lock()
        defer { lock.unlock() }
        try machine.add(service.name, configuration: service.configuration,
                        stopMargin: service.enforcesStopTimeout ? .seconds(2) : .zero)
        let events = self.events
        service.eventSink = { events.publish($0) }
        refreshPolicyLocked(of: service)
        if service.configuration.watchdog != nil || service.configuration.startTimeout != nil, service.callClock == nil,
           !service.supervisesItsOwnCalls {
            service.callClock = makeThreadCallClock(for: service)
        }
        members[service.name] = service
    }

    /// Orders a service to run. It starts now, or as soon as everything it
    /// requires has started.
    func start(_ name: String) throws(ServiceError) {
        try start(name, retrying: false)
    }

    private func start(_ name: String, retrying: Bool) throws(ServiceError) {
        var actions: [Action] = []
        // Declared first, so it runs last: after the lock is released.
        defer { perform(actions) }
        lock.lock()
        defer { lock.unlock() }
        // Declared last, so it runs first: under the lock, whether the order was refused or not.
        defer { actions = applyUpdatesLocked(actions) }
        try machine.orderStart(name, retrying: retrying, makeRun: makeRunLocked, into: &actions)
    }

    /// Orders every service to run; those whose dependencies are broken are
    /// logged and left stopped.
    func startAll() {
        for name in lock.withLock({ machine.names }) {
            do {
                try start(name)
            } catch {
                // A broken dependency graph was logged once already, as "not started: …".
                if lock.withLock({ machine.dependencyProblem(of: name) != nil }) { continue }
                logger.error("\(error.reason)", metadata: ["service": "\(name)"])
            }
        }
    }

    /// Orders the service to stop, after the services that require it, and
    /// returns once its stop step has run (after the current loop turn
    /// returns) or its stop timeout has passed. Stopping a stopped service does nothing.
    func stop(_ name: String) async throws(ServiceError) {
        let stops = try transition { machine throws(ServiceError) in try machine.orderStop(name) }
        await performAwaiting(stops)
    }

    /// Stops the service and starts it again; the restart is counted for `cause`.
    /// A reload of a running service with `reload = "overlap"` creates the
    /// new version first instead (``OverlappingReload``).
    func restart(_ name: String, cause: RestartCause) async throws(ServiceError) {
        if cause == .reload, let service = lock.withLock({ members[name] }) as? any OverlappingReload,
           service.configuration.reload == .overlap, await reloadOverlapping(service, named: name) {
            return
        }
        try await stop(name)
        try start(name)
        countRestart(of: name, cause: cause)
    }

    /// Reloads `service` with its new version created beside the running
    /// one, on a thread of its own. Returns whether that settled the reload;
    /// `false` when a stop and a start must do it instead (nothing runs, or
    /// no thread could be had).
    private func reloadOverlapping(_ service: any OverlappingReload, named name: String) async -> Bool {
        // One at a time per service: a new version still in svc_create is not joined by a third.
        guard lock.withLock({ overlapping.insert(name).inserted }) else {
            logger.warning("\(service.file) changed again while the new version of an overlapping reload is still starting; left for the next reload",
                           metadata: ["service": "\(name)"])
            return true
        }
        let limit = Self.overlapWait(for: service)
        let outcome: OffThePool.Outcome<OverlapOutcome>
        do {
            outcome = try await OffThePool.run(name: "host:reload", within: limit) { [self] in
                defer { lock.withLock { _ = overlapping.remove(name) } }
                return service.reloadOverlapping()
            }
        } catch {
            lock.withLock { _ = overlapping.remove(name) }
            logger.warning("\(error); this reload stops and starts the service instead of overlapping",
                           metadata: ["service": "\(name)"])
            return false
        }
        switch outcome {
        case .finished(.replaced):
            countRestart(of: name, cause: .reload)
            return true
        case .finished(.kept):
            return true
        case .finished(.notRunning):
            return false
        case .timedOut:
            // The new version is still loading or in svc_create (a thread
            // cannot be interrupted there); the old one runs on, and the
            // new one takes over if its create ever returns 0.
            logger.warning("the overlapping reload's new version has not started within \(limit.milliseconds) ms; the old version runs on, and this reload goes on without it",
                           metadata: ["service": "\(name)"])
            return true
        }
    }

    private func countRestart(of name: String, cause: RestartCause) {
        lock.withLock { members[name]?.updateMetadata { $0.restartsByCause[cause, default: 0] += 1 } }
    }

    /// How long a reload waits for an overlapping reload of a service: its
    /// new version's load and create (twice the start timeout, or as long as
    /// a load-time scan may take when there is none) and the old version's
    /// stop, twice over; for a worker, also the time it may take to say it
    /// starts loading (its own deadlines end it first: this is a backstop).
    static func overlapWait(for service: BaseService) -> Duration {
        let configuration = service.configuration
        let create = configuration.startTimeout.map { $0 * 2 } ?? Limits.defaultScanTimeout * 2
        let launch = service.isolation == .process ? Limits.defaultScanTimeout : .zero
        return launch + create + configuration.stopTimeout * 2
    }

    func remove(_ name: String) async throws(ServiceError) {
        let stops = try transition { machine throws(ServiceError) in try machine.orderRemoval(name) }
        await performAwaiting(stops)
        lock.withLock {
            machine.removed(name)
            members[name] = nil
        }
    }

    /// Starts again, once, a service that gave up.
    func retry(_ name: String) throws(ServiceError) {
        try start(name, retrying: true)
    }

    /// The services that gave up.
    var failedServices: [String] {
        lock.withLock { machine.failedServices }
    }

    /// Starts again every service that gave up (SIGHUP's second duty), once each.
    func retryFailed() -> [String] {
        var retried: [String] = []
        for name in lock.withLock({ machine.failedServices }) {
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
        lock.withLock { machine.beginShutdown() }
        // In rounds: each round stops, all at once, the running services that
        // no running service requires.
        while true {
            let round = lock.withLock { machine.shutdownRound() }
            if round.isEmpty { break }
            await withTaskGroup(of: Void.self) { group in
                for stop in round {
                    group.addTask { await self.performAwaiting([stop]) }
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
            machine.beginShutdown()
            return Array(members.values)
        }
        for service in services { service.stopSignal.raise(.ordered) }
        events.finish()
    }

    func service(named name: String) -> BaseService? {
        lock.withLock { members[name] }
    }

    var services: [BaseService] {
        lock.withLock { machine.names.compactMap { members[$0] } }
    }

    /// How each service stands, in the order they were added.
    func statuses() -> [ServiceStatus] {
        statuses(of: nil)
    }

    func status(of name: String) -> ServiceStatus? {
        statuses(of: [name]).first
    }

    /// The statuses of the named services that exist: their supervision read
    /// under the lock, each status built after it (a plugin's digest is
    /// computed on first use).
    private func statuses(of names: [String]?) -> [ServiceStatus] {
        let (now, wallNow) = (ContinuousClock.now, Date())
        return supervised(names).map { ServiceStatus(service: $0.0, supervision: $0.1, now: now, wallNow: wallNow) }
    }

    /// The named services that exist, with their supervision, read in one
    /// pass under the lock; `nil`: every service, in the order they were added.
    private func supervised(_ names: [String]? = nil) -> [(BaseService, Machine.Status)] {
        lock.withLock {
            (names ?? machine.names).compactMap { name in
                guard let service = members[name], let status = machine.status(of: name) else { return nil }
                return (service, status)
            }
        }
    }

    /// Every service's state and counters: supervision read under the lock,
    /// each service's own metadata and loop count after it.
    func samples() -> [ServiceSample] {
        supervised().map { service, status in
            let metadata = service.metadata
            return ServiceSample(
                name: service.name, state: status.state, failure: status.failure, waitingFor: status.waitingFor,
                starts: metadata.starts, restarts: metadata.restartsByCause, reloads: metadata.reloadsByResult,
                loops: service.loopsCompleted, lastStarted: metadata.lastStarted)
        }
    }

    var stateCounts: [ServiceStatus.State: Int] {
        lock.withLock { machine.stateCounts }
    }

    /// Whether a service is stopped by an order, or was never started.
    func isStoppedByOrder(_ name: String) -> Bool {
        lock.withLock { machine.isStoppedByOrder(name) }
    }

    /// Whether a service's thread was abandoned inside the plugin and has not come back.
    func isHung(_ name: String) -> Bool {
        lock.withLock { machine.isHung(name) }
    }

    /// Whether ``shutdown()`` has begun: nothing is added or started any more.
    var hasShutDown: Bool {
        lock.withLock { machine.hasShutDown }
    }

    // MARK: Reports from service threads

    func serviceStarted(_ service: BaseService, by runner: ServiceRunner) {
        // The state first, so that whoever sees the event sees it running.
        let launches = transition { $0.runStarted(service.name, runner, makeRun: makeRunLocked) }
        let metadata = service.metadata
        logger.info("started (start #\(metadata.starts)\(metadata.pluginVersion.map { ", version \($0)" } ?? ""))",
                    metadata: LifecycleEvent.started(start: metadata.starts, version: metadata.pluginVersion).metadata(service: service.name))
        service.report(.started(starts: metadata.starts))
        perform(launches)
    }

    /// Records how a run ended and decides whether the runner starts the service again.
    func serviceStopped(_ service: BaseService, by runner: ServiceRunner, reason: StopReason, ran: Duration) -> RestartDecision {
        let name = service.name
        switch reason {
        case .ordered, .requested, .finished:
            logger.info("stopped: \(reason)", metadata: LifecycleEvent.stopped(reason).metadata(service: name))
        case .failed, .startFailed:
            logger.error("stopped: \(reason)", metadata: LifecycleEvent.stopped(reason).metadata(service: name))
        }
        let stops = transition { $0.runEnded(name, runner, reason: reason) }
        service.report(.stopped(reason))
        // What requires this service cannot keep running without it.
        performBlocking(stops)
        let (decision, actions): (RestartDecision, [Action]) = lock.withLock {
            let (decision, actions) = machine.decideAfterRun(
                name, runner, reason: reason, ran: ran, now: .now, stopOrdered: service.stopSignal.request == .ordered,
                stopsForGood: service.stopsForGood(after: reason))
            return (decision, applyUpdatesLocked(actions))
        }
        perform(actions)
        return decision
    }

    /// `runner` cannot go on: no thread could be created for it, the plugin
    /// ended its thread (`pthread_exit`), or (a host bug) a transition was illegal.
    func runnerFailed(_ service: BaseService, _ runner: ServiceRunner, reason: String) {
        perform(transition { $0.runnerFailed(service.name, runner, reason: reason) })
    }

    // MARK: Transitions and actions

    /// Runs one transition under the lock, applies its metadata updates
    /// there, and returns the rest of its actions, to perform after unlocking.
    private func transition<Failure: Error>(_ body: (inout Machine) throws(Failure) -> [Action]) throws(Failure) -> [Action] {
        lock.lock()
        defer { lock.unlock() }
        return applyUpdatesLocked(try body(&machine))
    }

    private func applyUpdatesLocked(_ actions: [Action]) -> [Action] {
        actions.filter { action in
            guard case .update(let name, let change) = action else { return true }
            members[name]?.updateMetadata { metadata in
                switch change {
                case .startOrdered(let retrying):
                    if !retrying { metadata.restarts = 0 }
                    metadata.failed = false
                    metadata.failureReason = nil
                case .restarting(let restarts, let cause):
                    metadata.restarts = restarts
                    metadata.restartsByCause[cause, default: 0] += 1
                case .restartCounted(let cause):
                    metadata.restartsByCause[cause, default: 0] += 1
                case .failed(let reason, let recorded):
                    metadata.failed = true
                    metadata.failureReason = reason
                    if recorded { metadata.record(ServiceFailure(code: -1, message: reason)) }
                }
            }
            return false
        }
    }

    /// A run for a service whose start the machine decided, made under the
    /// lock; its thread starts with the `.launch` action.
    private func makeRunLocked(_ name: String) -> ServiceRunner {
        // Unwrapped safely: the machine only launches services it has, and they are added here in the same step.
        let service = members[name]!
        service.stopSignal.reset()
        let delay = service.metadata.starts == 0 ? service.configuration.delay : .zero
        return ServiceRunner(service: service, manager: self, initialDelay: delay)
    }

    /// Performs actions where waiting may suspend: a stop order's caller.
    private func performAwaiting(_ actions: [Action]) async {
        for action in actions {
            guard case .stop(let runner, let name, let reason) = action else {
                perform([action])
                continue
            }
            let deadline = orderToEnd(runner, of: name, because: reason)
            stopWaited(runner, of: name, ended: await runner.finished.wait(timeout: deadline))
        }
    }

    /// Performs actions on a service's own thread, which cannot await.
    private func performBlocking(_ actions: [Action]) {
        for action in actions {
            guard case .stop(let runner, let name, let reason) = action else {
                perform([action])
                continue
            }
            let deadline = orderToEnd(runner, of: name, because: reason)
            stopWaited(runner, of: name, ended: runner.finished.waitBlocking(timeout: deadline))
        }
    }

    /// Performs actions that do not wait (every kind but `.stop`).
    private func perform(_ actions: [Action]) {
        for action in actions {
            switch action {
            case .launch(let runner):
                runner.launch()
            case .log(let level, let message, let name, let event):
                logger.log(level: level, "\(message)", metadata: event?.metadata(service: name) ?? ["service": "\(name)"])
            case .publish(let name, let kind):
                service(named: name)?.report(kind)
            case .stop, .update:
                assertionFailure("\(action) is performed by the caller that can wait, or under the lock")
            }
        }
    }

    /// Orders a run to end; returns how long to wait for it.
    private func orderToEnd(_ runner: ServiceRunner, of name: String, because reason: String?) -> Duration {
        if let reason {
            logger.notice("stopping: \(reason)", metadata: ["service": "\(name)"])
        }
        runner.service.stopSignal.raise(.ordered)
        return lock.withLock { machine.stopDeadline(of: name) }
    }

    /// After waiting for a run to end: if it did not, its thread is
    /// abandoned, and the machine told again if the call ever returns.
    private func stopWaited(_ runner: ServiceRunner, of name: String, ended: Bool) {
        if ended {
            lock.withLock { machine.runFinished(name, runner) }
            return
        }
        perform(transition { $0.runAbandoned(name, runner) })
        Task { [weak self] in
            await runner.finished.wait()
            guard let self else { return }
            perform(transition { $0.hungCallReturned(name, runner, makeRun: makeRunLocked) })
        }
    }

    private func refreshPolicyLocked(of service: BaseService) {
        let policy = machine.policy(configured: service.configuration.restart)
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
            logger.error("\(why)", metadata: LifecycleEvent.hung(reason: why).metadata(service: service.name))
            service.report(.hung(reason: why))
        }
    }
}
