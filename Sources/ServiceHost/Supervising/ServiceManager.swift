import Foundation
import Logging

/// Starts, stops and restarts services, and decides what happens when one
/// stops on its own. Reached only through ``Scheduler``.
///
/// Recovery is event driven: the service's own thread asks for a decision
/// the moment a run ends, and restarts at once (or after its backoff) on that
/// same thread. Nothing polls.
final class ServiceManager: @unchecked Sendable {
    enum RestartDecision: Equatable {
        case restart(after: Duration)
        case remainStopped
    }

    /// The manager's record of one service.
    private final class Supervision {
        let service: BaseService
        /// The thread running the service now, if any.
        var runner: ServiceRunner?
        var backoff: RestartBackoff

        init(service: BaseService) {
            self.service = service
            backoff = RestartBackoff(service.configuration)
        }
    }

    private enum State {
        case running
        case shutDown
    }

    private let lock = NSLock()
    private var state: State = .running
    private var supervisions: [String: Supervision] = [:]
    /// Names in the order they were added, for stable snapshots and shutdown.
    private var order: [String] = []
    private var recovery: Bool
    private let logger: Logger
    let events = EventBroadcaster()

    init(recovery: Bool, logger: Logger) {
        self.recovery = recovery
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
        switch state {
        case .running: break
        case .shutDown: throw ServiceError(.shutDown, service: service.name, reason: "the scheduler has shut down")
        }
        guard supervisions[service.name] == nil else {
            throw ServiceError(.duplicateService, service: service.name, reason: "a service with this name is already added")
        }
        let events = self.events
        service.eventSink = { events.publish($0) }
        Self.refreshPolicy(of: service, recovery: recovery)
        supervisions[service.name] = Supervision(service: service)
        order.append(service.name)
    }

    func start(_ name: String) throws(ServiceError) {
        lock.lock()
        defer { lock.unlock() }
        switch state {
        case .running: break
        case .shutDown: throw ServiceError(.shutDown, service: name, reason: "the scheduler has shut down")
        }
        let supervision = try supervisionLocked(name)
        guard supervision.runner == nil else {
            throw ServiceError(.illegalTransition, service: name, reason: "cannot start: already running")
        }
        let service = supervision.service
        service.stopSignal.reset()
        supervision.backoff.reset()
        service.updateMetadata {
            $0.restarts = 0
            $0.failed = false
            $0.failureReason = nil
        }
        let delay = service.metadata.starts == 0 ? service.configuration.delay : .zero
        let runner = ServiceRunner(service: service, manager: self, initialDelay: delay)
        supervision.runner = runner
        runner.launch()
    }

    func startAll() {
        for name in lock.withLock({ order }) {
            do {
                try start(name)
            } catch {
                logger.error("\(error)", metadata: ["service": "\(name)"])
            }
        }
    }

    /// Orders the service to stop and returns once its `onStop` has run
    /// (after the current loop turn returns). Stopping a stopped service does nothing.
    func stop(_ name: String) async throws(ServiceError) {
        let (supervision, runner) = try currentRunner(of: name)
        guard let runner else { return }
        supervision.service.stopSignal.raise(.ordered)
        await runner.waitUntilFinished()
        lock.withLock {
            if supervision.runner === runner { supervision.runner = nil }
        }
    }

    func restart(_ name: String) async throws(ServiceError) {
        try await stop(name)
        try start(name)
    }

    func remove(_ name: String) async throws(ServiceError) {
        try await stop(name)
        lock.withLock {
            supervisions[name] = nil
            order.removeAll { $0 == name }
        }
    }

    /// Stops every service, all at once, and takes no more orders.
    func shutdown() async {
        let names: [String] = lock.withLock {
            state = .shutDown
            return order
        }
        await withTaskGroup(of: Void.self) { group in
            for name in names {
                group.addTask { try? await self.stop(name) }
            }
        }
        events.finish()
    }

    func service(named name: String) -> BaseService? {
        lock.withLock { supervisions[name]?.service }
    }

    var services: [BaseService] {
        lock.withLock { order.compactMap { supervisions[$0]?.service } }
    }

    // MARK: Reports from service threads

    func serviceStarted(_ service: BaseService) {
        let metadata = service.metadata
        logger.info("started (start #\(metadata.starts)\(metadata.pluginVersion.map { ", version \($0)" } ?? ""))",
                    metadata: ["service": "\(service.name)"])
        service.report(.started(starts: metadata.starts))
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
        service.report(.stopped(reason))
        if case .ordered = reason { return .remainStopped }

        lock.lock()
        guard let supervision = supervisions[name], supervision.runner === runner, case .running = state else {
            lock.unlock()
            return .remainStopped
        }
        let policy = service.configuration.restart ?? (recovery ? .always : .never)
        guard policy.restarts(afterFailure: reason.isFailure) else {
            supervision.runner = nil
            lock.unlock()
            logger.info("not restarting: restart policy is \(policy)\(recovery ? "" : ", recovery is off")", metadata: ["service": "\(name)"])
            return .remainStopped
        }
        let restarts = service.metadata.restarts
        if let retries = service.configuration.retries, restarts >= retries {
            supervision.runner = nil
            lock.unlock()
            let why = "gave up after \(restarts) restart\(restarts == 1 ? "" : "s") (retries = \(retries)); last: \(reason)"
            service.updateMetadata {
                $0.failed = true
                $0.failureReason = why
            }
            logger.error("failed: \(why)", metadata: ["service": "\(name)"])
            service.report(.failed(reason: why))
            return .remainStopped
        }
        let delay = supervision.backoff.nextDelay(afterRunning: ran)
        lock.unlock()
        service.updateMetadata { $0.restarts = restarts + 1 }
        logger.info("restarting (start #\(service.metadata.starts + 1))\(delay > .zero ? " in \(delay)" : "")",
                    metadata: ["service": "\(name)"])
        service.report(.restarting(restart: restarts + 1, delay: delay))
        return .restart(after: delay)
    }

    func runnerFailed(_ service: BaseService, _ runner: ServiceRunner, error: any Error) {
        logger.critical("internal error, service abandoned: \(error)", metadata: ["service": "\(service.name)"])
        lock.withLock {
            if let supervision = supervisions[service.name], supervision.runner === runner { supervision.runner = nil }
        }
    }

    // MARK: Helpers

    private func currentRunner(of name: String) throws(ServiceError) -> (Supervision, ServiceRunner?) {
        lock.lock()
        defer { lock.unlock() }
        let supervision = try supervisionLocked(name)
        return (supervision, supervision.runner)
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
}
