import Foundation
import Testing
@testable import ServiceHost

/// What the host does with each `svc_loop` result and with `request_stop`.
@Suite("Loop results and recovery")
struct LoopResultTests {
    @Test func continueCallsTheLoopAgain() async throws {
        let host = try await TestHost(probes: [("P.so", "[config]\nlog_loops = true\n")])
        try await host.logs.waitFor { $0.service == "P" && $0.message == "loop 50" }
        #expect(host.scheduler.snapshot(of: "P")?.state == .started)
        await host.scheduler.shutdown()
        #expect(host.scheduler.snapshot(of: "P")?.state == .stopped)
        #expect(host.logs.entries { $0.service == "P" && $0.message.hasPrefix("stop after") }.count == 1)
    }

    @Test func doneStopsCleanlyAndPolicyNeverLeavesItStopped() async throws {
        let host = try await TestHost(probes: [("P.so", "restart = \"never\"\n[config]\ndone_after = 3\n")])
        try await host.events.next("P") { $0 == .stopped(.finished) }
        try await host.logs.waitFor { $0.service == "P" && $0.message == "stop after 3 loops" }
        let snapshot = try #require(host.scheduler.snapshot(of: "P"))
        #expect(snapshot.state == .stopped)
        #expect(snapshot.metadata.errors.isEmpty)
        #expect(!snapshot.metadata.failed)
        await host.scheduler.shutdown()
        #expect(host.events.seen.filter { $0.kind.isStarted }.count == 1)
    }

    @Test func aNegativeResultIsAFailureWithItsCode() async throws {
        let host = try await TestHost(probes: [("P.so", "restart = \"never\"\n[config]\nfail_after = 2\nfail_code = -42\n")])
        let event = try await host.events.next("P") { $0.isStopped }
        guard case .stopped(.failed(let failure)) = event.kind else {
            Issue.record("expected a failure, got \(event)")
            return
        }
        #expect(failure.code == -42)
        #expect(failure.message.contains("svc_loop returned error -42"))
        #expect(host.scheduler.snapshot(of: "P")?.metadata.errors.map(\.code) == [-42])
        // svc_stop still runs after a failed loop.
        try await host.logs.waitFor { $0.service == "P" && $0.message == "stop after 2 loops" }
        await host.scheduler.shutdown()
    }

    @Test func aResultAboveDoneIsReservedAndCountsAsAFailure() async throws {
        let host = try await TestHost(probes: [("P.so", "restart = \"never\"\n[config]\nfail_after = 1\nfail_code = 7\n")])
        let event = try await host.events.next("P") { $0.isStopped }
        guard case .stopped(.failed(let failure)) = event.kind else {
            Issue.record("expected a failure, got \(event)")
            return
        }
        #expect(failure.code == 7)
        #expect(failure.message.contains("reserved"))
        await host.scheduler.shutdown()
    }

    @Test func requestStopRestartsTheServiceWithRecovery() async throws {
        let host = try await TestHost(probes: [("P.so", "[config]\nstop_after = 2\n")])
        try await host.events.next("P") { $0 == .stopped(.requested) }
        try await host.events.next("P") { $0.isRestarting }
        let started = try await host.events.next("P") { $0.isStarted }
        #expect(started.kind == .started(starts: 2))
        #expect(host.scheduler.snapshot(of: "P")?.metadata.restarts ?? 0 >= 1)
        await host.scheduler.shutdown()
        #expect(host.scheduler.snapshot(of: "P")?.state == .stopped)
    }

    @Test func requestStopLeavesTheServiceStoppedWithoutRecovery() async throws {
        let host = try await TestHost(recovery: false, probes: [("P.so", "[config]\nstop_after = 2\n"), ("Other.so", "[config]\ndone_after = 1\n")])
        try await host.events.next("P") { $0 == .stopped(.requested) }
        // The other service finishes later or earlier; either way nothing restarts.
        try await host.logs.waitFor { $0.service == "P" && $0.message.contains("not restarting: restart policy is never, recovery is off") }
        try await host.events.first("Other") { $0 == .stopped(.finished) }
        let snapshot = try #require(host.scheduler.snapshot(of: "P"))
        #expect(snapshot.state == .stopped)
        #expect(snapshot.metadata.starts == 1)
        #expect(snapshot.metadata.restartPolicy == .never)
        #expect(!host.events.seen.contains { $0.kind.isRestarting })
        await host.scheduler.shutdown()
    }

    @Test func exhaustedRetriesMarkTheServiceFailed() async throws {
        let host = try await TestHost(probes: [("P.so", "retries = 3\nbackoff_initial_ms = 0\n[config]\nfail_after = 1\n")])
        let failed = try await host.events.next("P") { $0.isFailed }
        guard case .failed(let reason) = failed.kind else { return }
        #expect(reason.contains("gave up after 3 restarts (retries = 3)"))
        let snapshot = try #require(host.scheduler.snapshot(of: "P"))
        #expect(snapshot.metadata.failed)
        #expect(snapshot.metadata.starts == 4)
        #expect(snapshot.metadata.restarts == 3)
        #expect(snapshot.metadata.errorCount == 4)
        #expect(snapshot.state == .stopped)
        #expect(host.logs.entries { $0.service == "P" && $0.level == .error && $0.message.contains("failed: gave up") }.count == 1)
        // A start order clears the failed mark and gives it its retries back:
        // it starts four more times and fails again.
        try host.scheduler.start("P")
        try await host.events.next("P") { $0 == .started(starts: 5) }
        try await host.events.next("P") { $0 == .restarting(restart: 3, delay: .zero) }
        try await host.events.next("P") { $0.isFailed }
        #expect(host.scheduler.snapshot(of: "P")?.metadata.starts == 8)
        await host.scheduler.shutdown()
    }

    @Test func onFailureRestartsAfterAFailureButNotAfterDone() async throws {
        let host = try await TestHost(probes: [
            ("Fails.so", "restart = \"on-failure\"\nretries = 1\nbackoff_initial_ms = 0\n[config]\nfail_after = 1\n"),
            ("Finishes.so", "restart = \"on-failure\"\n[config]\ndone_after = 1\n"),
        ])
        try await host.events.next("Fails") { $0.isFailed }
        try await host.logs.waitFor { $0.service == "Finishes" && $0.message.contains("not restarting: restart policy is on-failure") }
        #expect(host.scheduler.snapshot(of: "Fails")?.metadata.starts == 2)
        #expect(host.scheduler.snapshot(of: "Finishes")?.metadata.starts == 1)
        await host.scheduler.shutdown()
    }

    @Test func anIntervalPausesBetweenLoopsAndAStopCutsItShort() async throws {
        let interval = Duration.seconds(600)
        let host = try await TestHost(probes: [("P.so", "interval_ms = \(interval.milliseconds)\n[config]\nlog_loops = true\n")])
        try await host.logs.waitFor { $0.service == "P" && $0.message == "loop 1" }
        // The service now waits ten minutes for its next loop; shutdown must not.
        let began = ContinuousClock.now
        await host.scheduler.shutdown()
        #expect(ContinuousClock.now - began < interval / 10)
        #expect(host.logs.entries { $0.service == "P" && $0.message == "loop 2" }.isEmpty)
        #expect(host.logs.entries { $0.service == "P" && $0.message == "stop after 1 loops" }.count == 1)
    }

    @Test func aStartDelayIsCutShortByAStop() async throws {
        let host = try await TestHost(probes: [("P.so", "delay_ms = 600000\n")])
        await host.scheduler.shutdown()
        #expect(host.scheduler.snapshot(of: "P")?.state == .idle)
        #expect(host.logs.entries { $0.service == "P" && $0.message.hasPrefix("create") }.isEmpty)
    }
}
