import Foundation
import Testing
@testable import ServiceHost

/// A native service that counts its steps, for the state machine tests.
private final class CountingService: BaseService, @unchecked Sendable {
    var creates = 0
    var stops = 0

    override func onCreate() throws(ServiceFailure) { creates += 1 }
    override func onLoop() -> LoopOutcome { .done }
    override func onStop() { stops += 1 }
}

@Suite("State machine")
struct StateMachineTests {
    @Test func goesIdleStartedStoppedStartedAndNeverIdleAgain() throws {
        let service = CountingService(name: "counting")
        #expect(service.currentState == .idle)
        #expect(try service.start() == nil)
        #expect(service.currentState == .started)
        try service.stop()
        #expect(service.currentState == .stopped)
        #expect(try service.start() == nil)
        #expect(service.currentState == .started)
        try service.stop()
        #expect(service.currentState == .stopped)
        #expect(service.creates == 2)
        #expect(service.stops == 2)
        #expect(service.metadata.starts == 2)
    }

    @Test func rejectsStartingAStartedService() throws {
        let service = CountingService(name: "counting")
        _ = try service.start()
        let error = #expect(throws: ServiceError.self) { _ = try service.start() }
        #expect(error?.code == .illegalTransition)
        #expect(error?.description == "counting: cannot start: already started")
        #expect(service.creates == 1)
    }

    @Test func rejectsStoppingAnIdleService() {
        let service = CountingService(name: "counting")
        let error = #expect(throws: ServiceError.self) { try service.stop() }
        #expect(error?.reason == "cannot stop: never started")
        #expect(service.currentState == .idle)
        #expect(service.stops == 0)
    }

    @Test func rejectsStoppingAStoppedService() throws {
        let service = CountingService(name: "counting")
        _ = try service.start()
        try service.stop()
        let error = #expect(throws: ServiceError.self) { try service.stop() }
        #expect(error?.reason == "cannot stop: already stopped")
        #expect(service.stops == 1)
    }

    @Test func aFailedCreateMovesToStoppedAndIsRecorded() throws {
        final class FailingService: BaseService, @unchecked Sendable {
            override func onCreate() throws(ServiceFailure) { throw ServiceFailure(code: -3, message: "no database") }
        }
        let service = FailingService(name: "failing")
        let failure = try service.start()
        #expect(failure == ServiceFailure(code: -3, message: "no database"))
        #expect(service.currentState == .stopped)
        #expect(service.metadata.errors.map(\.code) == [-3])
        #expect(service.metadata.starts == 0)
        // Stopping after a failed create is illegal: there is nothing to stop.
        #expect(throws: ServiceError.self) { try service.stop() }
    }

    @Test func resetToIdleIsForTestsOnly() throws {
        let service = CountingService(name: "counting")
        _ = try service.start()
        try service.stop()
        service.resetToIdle()
        #expect(service.currentState == .idle)
    }

    @Test func theEventLoopEndsOnARequestedStopAndAnOrderOutranksIt() {
        final class LoopingService: BaseService, @unchecked Sendable {
            var turns = 0
            override func onLoop() -> LoopOutcome {
                turns += 1
                if turns == 3 { requestStop() }
                return .continue
            }
        }
        let service = LoopingService(name: "looping")
        #expect(service.runEventLoop() == .requested)
        #expect(service.turns == 3)
        service.stopSignal.raise(.ordered)
        service.stopSignal.raise(.requested)
        #expect(service.runEventLoop() == .ordered)
        #expect(service.turns == 3)
    }

    @Test func theSchedulerShowsTheStatesOfItsServices() async throws {
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let events = EventWaiter(scheduler)
        final class OnceService: BaseService, @unchecked Sendable {
            override func onLoop() -> LoopOutcome { .done }
        }
        try scheduler.add(OnceService(name: "once", configuration: .init(restart: .never)))
        #expect(scheduler.snapshot(of: "once")?.state == .idle)
        try scheduler.start("once")
        try await events.next("once") { $0 == .stopped(.finished) }
        let snapshot = try #require(scheduler.snapshot(of: "once"))
        #expect(snapshot.state == .stopped)
        #expect(snapshot.metadata.starts == 1)
        #expect(snapshot.metadata.restartPolicy == .never)
        await scheduler.shutdown()
    }

    @Test func aRemovedServiceIsGoneAndTakesNoMoreOrders() async throws {
        let host = try await TestHost(probes: [("P.so", ""), ("Q.so", "")])
        try await host.events.first("P") { $0.isStarted }
        try await host.scheduler.remove("P")
        #expect(host.scheduler.snapshot().map(\.name) == ["Q"])
        let error = #expect(throws: ServiceError.self) { try host.scheduler.start("P") }
        #expect(error?.code == .unknownService)
        #expect(host.logs.entries { $0.service == "P" && $0.message.hasPrefix("stop after") }.count == 1)
        await host.scheduler.shutdown()
    }

    @Test func theRuntimeDirectoryIsPrivateAndRemovedAtShutdown() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "P.so")
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let directory = scheduler.runtimeDirectory
        var info = stat()
        #expect(stat(directory, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o700)
        try await scheduler.addPlugins(directory: folder.path)
        // The loaded copy lives there, not at the user's path.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter(StaleRuntimeDirectories.isCopy).count == 1)
        await scheduler.shutdown()
        #expect(!FileManager.default.fileExists(atPath: directory))
    }
}
