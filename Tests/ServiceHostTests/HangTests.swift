import Foundation
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// Plugins that hang, in both isolations: the watchdog, the stop timeout, and
/// a host shutdown that always finishes.
@Suite("Hangs and shutdown")
struct HangTests {
    @Test(.timed, arguments: ["thread", "process"])
    func shutdownWithAHungPluginFinishesWithinItsStopTimeout(isolation: String) async throws {
        let folder = try PluginFolder()
        let stopTimeout = Duration.milliseconds(500)
        try await folder.add("faulty.c", as: "Stuck.so", sidecar: """
            stop_timeout_ms = \(stopTimeout.milliseconds)
            [config]
            fault = "hang"
            fault_after = 1
            """)
        try await folder.add(as: "Fine.so")
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", isolation])
        try await host.waitForOutput("fault hang in loop")
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        let began = ContinuousClock.now
        host.send(SIGTERM)
        let status = try await host.waitForExit()
        let took = ContinuousClock.now - began
        #expect(took >= stopTimeout)
        // The hang never ends: any bound proves it was not waited for; a wide
        // one leaves room for a loaded machine.
        #expect(took < stopTimeout * 10, "shutdown took \(took): \(host.outputText)")
        // An abandoned thread makes the exit code say so; a killed worker left nothing behind.
        if isolation == "thread" {
            #expect(status != 0, "\(host.outputText)")
            #expect(host.outputText.contains("stopped, abandoning Stuck: still inside the plugin after stop_timeout_ms"))
        } else {
            #expect(status == 0, "\(host.outputText)")
            #expect(host.outputText.contains("all services stopped"))
        }
        // The good service was stopped properly all the same.
        #expect(host.outputText.contains("origin=plugin service=Fine [ServiceHost] stop after"))
        if isolation == "thread" {
            #expect(host.outputText.contains("hung: svc_loop did not return within stop_timeout_ms (500 ms) of the stop; its thread was abandoned"))
        } else {
            #expect(host.outputText.contains("svc_loop did not return within stop_timeout_ms (500 ms) of the stop; killing the worker"))
        }
    }

    @Test func theWatchdogRecordsAndLogsAHangInThreadIsolation() async throws {
        let host = try await TestHost(plugins: [(file: "Slow.so", fixture: "faulty.c", sidecar: """
            watchdog_ms = 50
            stop_timeout_ms = 100
            interval_ms = 1
            [config]
            fault = "sleep"
            fault_ms = 400
            fault_after = 1
            log_loops = true
            """)])
        let hung = try await host.events.next("Slow") { if case .hung = $0 { true } else { false } }
        guard case .hung(let why) = hung.kind else { return }
        #expect(why.hasPrefix("hung: svc_loop has run for"))
        #expect(why.hasSuffix("(watchdog_ms = 50); in thread isolation it cannot be cut short"))
        // Recorded, and the service carries on once the call returns.
        try await host.logs.waitFor { $0.service == "Slow" && $0.message == "loop 3" }
        #expect(host.scheduler.snapshot(of: "Slow")?.metadata.errors.contains { $0.message.hasPrefix("hung: svc_loop") } == true)
        await host.scheduler.shutdown()
    }

    @Test func theWatchdogReportsEachOverrunningCallOnce() {
        let reports = ReportLog()
        let clock = CallClock(loopLimit: .milliseconds(50), createLimit: .milliseconds(10)) { call, elapsed in
            reports.add("\(call) \(elapsed.milliseconds)")
        }
        clock.loopBegins()
        let started = CallClock.now()
        clock.check(now: started + 20_000_000)  // 20 ms: within the limit
        #expect(reports.all.isEmpty)
        clock.check(now: started + 60_000_000)
        clock.check(now: started + 90_000_000)  // the same call, still running
        #expect(reports.all == ["loop 60"])
        clock.loopEnds()
        clock.check(now: started + 200_000_000)  // nothing running
        clock.createBegins()
        clock.check(now: CallClock.now() + 11_000_000)
        #expect(reports.all.count == 2)
        #expect(reports.all.last?.hasPrefix("create ") == true)
    }

    @Test func aClockStaysWatchedWhileAnyRunWatchesIt() {
        // A new run can begin while the thread of the last one is on its way out.
        let clock = CallClock(loopLimit: .seconds(1), createLimit: nil) { _, _ in }
        Watchdog.shared.watch(clock)
        Watchdog.shared.watch(clock)
        Watchdog.shared.unwatch(clock)
        #expect(Watchdog.shared.isWatching(clock))
        Watchdog.shared.unwatch(clock)
        #expect(!Watchdog.shared.isWatching(clock))
    }

    @Test func aCompletionWaitTimesOutEvenWithAZeroTimeout() async {
        let never = Completion()
        #expect(await never.wait(timeout: .zero) == false)
        #expect(await never.wait(timeout: .milliseconds(20)) == false)
        let done = Completion()
        done.complete()
        #expect(await done.wait(timeout: .zero) == true)
        #expect(done.waitBlocking(timeout: .zero))
    }

    @Test(.timed) func aThreadThatIgnoresTheStopTimeoutIsAbandonedAndTheServiceMarkedHung() async throws {
        // The loop call stays inside the plugin until the test creates this
        // file (a timed sleep could end before a loaded test got to stop it).
        let releaseDirectory = try TemporaryDirectory("release")
        let release = releaseDirectory.file("released").path
        let host = try await TestHost(plugins: [(file: "Stuck.so", fixture: "faulty.c", sidecar: """
            stop_timeout_ms = 1000
            interval_ms = 10
            [config]
            fault = "wait"
            release_file = "\(release)"
            fault_after = 1
            """)])
        try await host.logs.waitFor { $0.message == "fault wait in loop" }
        let stopTimeout = Duration.milliseconds(1000)
        let began = ContinuousClock.now
        try await host.scheduler.stop("Stuck")
        // Abandoned after the stop timeout.
        #expect(ContinuousClock.now - began < stopTimeout * 4)
        let snapshot = try #require(host.scheduler.snapshot(of: "Stuck"))
        #expect(snapshot.metadata.failed)
        #expect(snapshot.metadata.failureReason?.hasPrefix("hung: svc_loop did not return within stop_timeout_ms (1000 ms)") == true)
        // While the call is still inside the plugin, the service cannot start again.
        let refused = #expect(throws: ServiceError.self) { try host.scheduler.start("Stuck") }
        #expect(refused?.reason == "cannot start: its previous run is still inside the plugin (hung)")
        // Once the call returns, the thread stops the service cleanly and it may start.
        #expect(FileManager.default.createFile(atPath: release, contents: nil))
        try await host.logs.waitFor { $0.message == "the hung call returned; the service can be started again" }
        #expect(host.logs.entries { $0.service == "Stuck" && $0.message == "stop" }.count == 1)
        try host.scheduler.start("Stuck")
        try await host.events.next("Stuck") { $0 == .started(starts: 2) }
        await host.scheduler.shutdown()
        withExtendedLifetime(releaseDirectory) {}
    }

    @Test func workersDieWithTheirHost() async throws {
        let folder = try PluginFolder()
        try await folder.add("faulty.c", as: "Spin.so", sidecar: "[config]\nfault = \"hang\"\nfault_after = 1\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", "process", "--log-level", "debug"])
        try await host.waitForOutput("fault hang in loop")
        let line = try #require(host.outputText.split(separator: "\n").first { $0.contains("] worker ") && $0.contains(" loads ") })
        let pid = try #require(line.split(separator: " ").drop { $0 != "worker" }.dropFirst().first.flatMap { Int32($0) })
        #expect(kill(pid, 0) == 0)
        host.send(SIGKILL)
        _ = try await host.waitForExit()
        // The worker notices its host is gone (its socket closes) and exits at
        // once. It is no child of this process, so there is no exit event to
        // await: check until a deadline.
        let deadline = ContinuousClock.now + .seconds(10)
        while kill(pid, 0) == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(kill(pid, 0) != 0, "worker \(pid) outlived its host")
    }
}
