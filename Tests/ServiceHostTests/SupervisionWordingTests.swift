import Foundation
import Testing
@testable import ServiceHost

/// A native service whose create always fails.
private final class NeverStarts: BaseService, @unchecked Sendable {
    override func onCreate() throws(ServiceFailure) { throw ServiceFailure(code: -2, message: "no database") }
}

/// A native service that runs until ordered to stop.
private final class Runs: BaseService, @unchecked Sendable {
    override func onLoop() -> LoopOutcome { .continue }
}

/// What the host says, read as a new user reads it; and the races around
/// events and a released scheduler.
@Suite("Supervision wording and races")
struct SupervisionWordingTests {
    @Test func theRestartCounterMovesWhileCreateKeepsFailingAndEmbeddedMessagesDoNotNameSIGHUP() async throws {
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        try scheduler.add(NeverStarts(name: "db", configuration: .init(retries: 3, backoffInitial: .zero, restartLimit: 0)))
        try scheduler.start("db")
        let waiter = EventWaiter(scheduler)
        try await waiter.next("db") { $0.isFailed }
        let restarting = logs.entries { $0.service == "db" && $0.message.hasPrefix("restarting") }.map(\.message)
        #expect(restarting == ["restarting (attempt #2)", "restarting (attempt #3)", "restarting (attempt #4)"])
        let failed = try #require(logs.entries { $0.service == "db" && $0.message.hasPrefix("failed: ") }.first)
        #expect(failed.message.hasPrefix("failed: gave up after 3 restarts (retries = 3); it stays stopped until retried (call retryFailed())"))
        #expect(!logs.entries.contains { $0.message.contains("SIGHUP") })
        await scheduler.shutdown()
    }

    /// A plugin added after shutdown (a SIGHUP reload racing a SIGTERM) is
    /// refused as such, not as a duplicate name.
    @Test func aPluginAddedAfterShutdownIsRefusedSayingSo() async throws {
        let folder = try PluginFolder()
        let file = try await folder.add(as: "Late.so")
        let scheduler = try Scheduler(logger: LogCapture().logger)
        await scheduler.shutdown()
        let error = await #expect(throws: PluginError.self) { try await scheduler.addPlugin(file: file) }
        #expect(error?.code == .loadFailed)
        #expect(error?.reason == "the scheduler has shut down")
    }

    @Test func aRetryGivesOneMoreStart() async throws {
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        try scheduler.add(NeverStarts(name: "db", configuration: .init(retries: 2, backoffInitial: .zero, restartLimit: 0)))
        let events = EventWaiter(scheduler)
        try scheduler.start("db")
        try await events.next("db") { $0.isFailed }
        #expect(scheduler.retryFailed() == ["db"])
        let again = try await events.next("db") { $0.isFailed }
        guard case .failed(let why) = again.kind else { return }
        #expect(why.hasPrefix("its retry (one more start) ended too"))
        // Three runs for the first budget (a start and two restarts), one for the retry.
        #expect(logs.entries { $0.service == "db" && $0.message.hasPrefix("stopped: failed to start") }.count == 4)
        await scheduler.shutdown()
    }

    @Test func aCycleIsLoggedOnce() async throws {
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        try scheduler.add(Runs(name: "A", configuration: .init(requires: ["B"])))
        try scheduler.add(Runs(name: "B", configuration: .init(requires: ["A"])))
        scheduler.startAll()
        for name in ["A", "B"] {
            #expect(logs.entries { $0.service == name && $0.level >= .error }.map(\.message).count == 1, "\(logs.entries)")
        }
        await scheduler.shutdown()
    }

    @Test func aServiceWaitingForARequirementThatCannotStartIsMentioned() async throws {
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        try scheduler.add(Runs(name: "app", configuration: .init(requires: ["db"])))
        try scheduler.add(NeverStarts(name: "db", configuration: .init(retries: 0)))
        try scheduler.add(Runs(name: "web", configuration: .init(requires: ["lost"])))
        try scheduler.add(Runs(name: "lost", configuration: .init(requires: ["ghost"])))
        scheduler.startAll()
        let line = try await logs.waitFor { $0.service == "app" && $0.message.hasPrefix("waiting for 'db'") }
        #expect(line.message.hasPrefix("waiting for 'db', which failed: gave up after 0 restarts (retries = 0)"))
        let web = try #require(logs.entries { $0.service == "web" && $0.message.hasPrefix("waiting for") }.first)
        #expect(web.message == "waiting for 'lost', which cannot start: requires 'ghost', which is not a known service")
        await scheduler.shutdown()
    }

    @Test func eventsSubscribedAfterStartAllIncludeTheFirstStarts() async throws {
        let scheduler = try Scheduler(logger: LogCapture().logger)
        try scheduler.add(Runs(name: "one"))
        let probe = EventWaiter(scheduler)
        scheduler.startAll()
        try await probe.next("one") { $0.isStarted }
        // The README's order: subscribe after startAll().
        let late = EventWaiter(scheduler)
        try await late.next("one", { $0 == .started(starts: 1) }, timeout: .seconds(5))
        await scheduler.shutdown()
    }

    @Test func eventsSubscribedAfterShutdownFinishAtOnce() async throws {
        let scheduler = try Scheduler(logger: LogCapture().logger)
        try scheduler.add(Runs(name: "one"))
        let probe = EventWaiter(scheduler)
        scheduler.startAll()
        try await probe.next("one") { $0.isStarted }
        await scheduler.shutdown()
        // Past events, then the end; a stream that never ended would time out here.
        let seen = try await EventWaiter(scheduler).remaining(timeout: .seconds(20))
        #expect(seen.map(\.kind) == [.started(starts: 1), .stopped(.ordered)])
    }

    @Test func aReleasedSchedulerFreesItsManagerAndRemovesItsRuntimeDirectory() async throws {
        weak var manager: AnyObject?
        let directory: String
        do {
            let scheduler = try Scheduler(logger: LogCapture().logger)
            try scheduler.add(Runs(name: "one"))
            let events = EventWaiter(scheduler)
            scheduler.startAll()
            try await events.next("one") { $0.isStarted }
            manager = scheduler.managerForTesting
            directory = scheduler.runtimeDirectory
            #expect(manager != nil)
        }
        #expect(manager == nil, "the manager outlived its scheduler")
        #expect(!FileManager.default.fileExists(atPath: directory))
    }
}
