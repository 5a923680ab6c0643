import Logging
import ServiceLifecycle
import Testing
@testable import ServiceHost

/// A native service that runs until ordered to stop.
private final class Runs: BaseService, @unchecked Sendable {
    override func onLoop() -> LoopOutcome { .continue }
}

@Suite("Scheduler in a ServiceGroup")
struct LifecycleTests {
    @Test func aServiceGroupsGracefulShutdownStopsEveryService() async throws {
        let scheduler = try Scheduler(logger: Logger(label: "test"))
        try scheduler.add(Runs(name: "Worker", configuration: .init(interval: .milliseconds(10))))
        let events = EventWaiter(scheduler)
        let group = ServiceGroup(configuration: .init(services: [scheduler], logger: Logger(label: "group")))
        let running = Task { try await group.run() }
        _ = try await events.next("Worker", { if case .started = $0 { true } else { false } })
        #expect(scheduler.status(of: "Worker")?.state == .running)
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(scheduler.status(of: "Worker")?.state == .stopped)
        _ = try await events.next("Worker", { $0 == .stopped(.ordered) })
    }
}
