import Foundation
import Synchronization
import Testing
@testable import ServiceHost

/// Backoff between restarts, its reset after a healthy run, and the restart
/// intensity limit.
@Suite("Restart policy")
struct RestartPolicyTests {
    @Test func backoffDoublesUpToTheCapAndResetsAfterAHealthyRun() {
        var backoff = RestartBackoff(initial: .milliseconds(100), maximum: .milliseconds(1000), healthyAfter: .seconds(10))
        let quick = Duration.milliseconds(5)
        let delays = (0..<7).map { _ in backoff.nextDelay(afterRunning: quick) }
        #expect(delays == [.zero, .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1000), .milliseconds(1000)])
        // A healthy run: the next restart is immediate again, then it grows anew.
        #expect(backoff.nextDelay(afterRunning: .seconds(10)) == .zero)
        #expect(backoff.nextDelay(afterRunning: quick) == .milliseconds(100))
        backoff.reset()
        #expect(backoff.nextDelay(afterRunning: quick) == .zero)
    }

    @Test func zeroInitialBackoffRestartsAtOnceEveryTime() {
        var backoff = RestartBackoff(initial: .zero, maximum: .seconds(30), healthyAfter: .seconds(10))
        #expect((0..<5).map { _ in backoff.nextDelay(afterRunning: .zero) } == Array(repeating: .zero, count: 5))
    }

    @Test func measuredDelaysBetweenRestartsDoubleUpToTheCap() async throws {
        let host = try await TestHost(probes: [("P.so", """
            backoff_initial_ms = 40
            backoff_max_ms = 160
            restart_limit = 0
            retries = 6
            [config]
            fail_after = 1
            """)])
        var announced: [Duration] = []
        var measured: [Duration] = []
        for _ in 0..<6 {
            let stopped = try await host.events.next("P") { $0.isStopped }
            let restarting = try await host.events.next("P") { $0.isRestarting }
            if case .restarting(_, let delay) = restarting.kind { announced.append(delay) }
            let started = try await host.events.next("P") { $0.isStarted }
            measured.append(started.time - stopped.time)
        }
        #expect(announced == [.zero, .milliseconds(40), .milliseconds(80), .milliseconds(160), .milliseconds(160), .milliseconds(160)])
        // Each restart waited at least what was announced (a timer never fires early).
        for (wait, delay) in zip(measured, announced) {
            #expect(wait >= delay, "waited \(wait) for a delay of \(delay)")
        }
        // And the waits grew: the 40 ms one is shorter than the 160 ms ones.
        #expect(measured[1] < measured[3])
        try await host.events.next("P") { $0.isFailed }
        await host.scheduler.shutdown()
    }

    @Test func aHealthyRunMakesEachRestartImmediate() async throws {
        // Each run lasts over healthy_after_ms before it fails: no backoff builds up.
        let host = try await TestHost(probes: [("P.so", """
            backoff_initial_ms = 5000
            healthy_after_ms = 50
            restart_limit = 0
            retries = 3
            [config]
            block_ms = 80
            fail_after = 1
            """)])
        try await host.events.next("P", { $0.isFailed }, timeout: .seconds(30))
        let delays = host.events.seen.compactMap { event -> Duration? in
            if case .restarting(_, let delay) = event.kind { delay } else { nil }
        }
        #expect(delays == [.zero, .zero, .zero])
        await host.scheduler.shutdown()
    }

    @Test func tooManyRestartsWithinTheWindowMarkTheServiceFailed() async throws {
        let host = try await TestHost(probes: [("P.so", """
            backoff_initial_ms = 0
            restart_limit = 4
            restart_window_ms = 60000
            [config]
            fail_after = 1
            """)])
        let failed = try await host.events.next("P") { $0.isFailed }
        guard case .failed(let why) = failed.kind else { return }
        #expect(why.hasPrefix("restarted 4 times within 60000 ms (restart_limit = 4); it stays stopped until retried (call retryFailed())"))
        #expect(host.scheduler.snapshot(of: "P")?.metadata.starts == 5)
        #expect(host.scheduler.snapshot(of: "P")?.metadata.failed == true)
        #expect(host.logs.entries { $0.level == .error && $0.message.hasPrefix("failed: restarted 4 times") }.count == 1)

        // SIGHUP's retry: one more start, not a new series, then failed again.
        #expect(host.scheduler.retryFailed() == ["P"])
        try await host.events.next("P") { $0 == .started(starts: 6) }
        try await host.events.next("P") { $0.isFailed }
        #expect(host.scheduler.snapshot(of: "P")?.metadata.starts == 6)
        #expect(host.scheduler.retryFailed() == ["P"])
        await host.scheduler.shutdown()
    }

    @Test func restartsOutsideTheWindowDoNotCount() async throws {
        // Every run lasts longer than the window, so no two restarts fall in one.
        let host = try await TestHost(probes: [("P.so", """
            backoff_initial_ms = 0
            restart_limit = 1
            restart_window_ms = 10
            retries = 3
            [config]
            block_ms = 30
            fail_after = 1
            """)])
        let failed = try await host.events.next("P") { $0.isFailed }
        guard case .failed(let why) = failed.kind else { return }
        #expect(why.hasPrefix("gave up after 3 restarts"), "\(why)")
        await host.scheduler.shutdown()
    }

    /// A caller that awaits a run's `stopped` event and orders a start at once
    /// may reach the manager before the runner has let go of the service; here
    /// the runner is held there for sure, stopping a dependent whose stop the
    /// test holds. The start is honoured once the runner lets go, never
    /// refused as "already running".
    @Test func aStartOrderedRightAfterTheStoppedEventIsHonoured() async throws {
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let events = EventWaiter(scheduler)
        let release = DispatchSemaphore(value: 0)
        let base = FinishesOnce(name: "base", configuration: .init(restart: .never))
        try scheduler.add(base)
        // A long stop timeout, so that base's runner surely still waits for user's stop when the start comes.
        try scheduler.add(HeldStop(name: "user", configuration: .init(stopTimeout: .seconds(60), requires: ["base"]), release: release))
        try scheduler.start("user")
        try scheduler.start("base")
        try await events.first("user") { $0.isStarted }
        base.finish.store(true, ordering: .relaxed)
        try await events.first("base") { $0 == .stopped(.finished) }
        // base's runner is now stopping "user", inside its held onStop.
        try scheduler.start("base")
        release.signal()
        try await events.first("base") { $0 == .started(starts: 2) }
        #expect(logs.entries { $0.service == "base" && $0.message == "starting again, as ordered while its run was ending" }.count == 1)
        await scheduler.shutdown()
    }

}

/// A native service whose first run finishes when told, and later ones run until stopped.
private final class FinishesOnce: BaseService, @unchecked Sendable {
    let finish = Atomic<Bool>(false)
    override func onLoop() -> LoopOutcome {
        metadata.starts == 1 && finish.load(ordering: .relaxed) ? .done : .continue
    }
}

/// A native service whose first stop waits for the test's signal.
private final class HeldStop: BaseService, @unchecked Sendable {
    private let release: DispatchSemaphore
    private let held = Atomic<Bool>(false)

    init(name: String, configuration: ServiceConfiguration, release: DispatchSemaphore) {
        self.release = release
        super.init(name: name, configuration: configuration)
    }

    override func onLoop() -> LoopOutcome { .continue }

    override func onStop() {
        if !held.exchange(true, ordering: .relaxed) { release.wait() }
    }
}
