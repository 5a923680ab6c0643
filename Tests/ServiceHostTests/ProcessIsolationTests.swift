import Foundation
import Testing
@testable import ServiceHost

/// Plugins that crash, exit or hang in worker processes: the host survives,
/// says why, and restarts them by policy; a good plugin beside them keeps going.
@Suite("Process isolation")
struct ProcessIsolationTests {
    /// A faulty plugin in a worker next to a good looping probe, both under `restart_limit = 2`.
    private func expectContained(fault: String, in phase: String = "loop", extraSidecar: String = "",
                                 reason: String) async throws {
        let host = try await TestHost(isolation: .process, plugins: [
            (file: "Bad.so", fixture: "faulty.c", sidecar: """
                backoff_initial_ms = 0
                restart_limit = 2
                \(extraSidecar)
                [config]
                fault = "\(fault)"
                fault_in = "\(phase)"
                fault_after = 2
                """),
            (file: "Good.so", fixture: "probe.c", sidecar: "interval_ms = 1\n[config]\nlog_loops = true\n"),
        ])
        let failed = try await host.events.next("Bad", { $0.isFailed }, timeout: .seconds(60))
        guard case .failed(let why) = failed.kind else { return }
        #expect(why.contains("restarted 2 times within 60000 ms (restart_limit = 2)"), "\(why)")
        #expect(why.contains(reason), "\(why)")
        let snapshot = try #require(host.scheduler.snapshot(of: "Bad"))
        #expect(snapshot.metadata.failed)
        #expect(snapshot.state == .stopped)
        #expect(snapshot.metadata.errors.filter { $0.message.contains(reason) }.count >= 3, "\(snapshot.metadata.errors)")
        // Every failure was logged with its reason and the file.
        let lines = host.logs.entries { $0.service == "Bad" && $0.level == .error && $0.message.contains(reason) }
        #expect(lines.count >= 3)
        #expect(lines.allSatisfy { $0.message.contains("\(host.folder.path)/Bad.so") })
        // The fault was reached in the worker, and its log line made it to the host.
        #expect(host.logs.entries { $0.service == "Bad" && $0.message == "fault \(fault) in \(phase)" }.count == 3)
        // The good one kept looping all along.
        let before = host.logs.entries { $0.service == "Good" && $0.message.hasPrefix("loop ") }.count
        try await host.logs.waitFor { [before] entry in
            entry.service == "Good" && entry.message == "loop \(before + 5)"
        }
        #expect(host.scheduler.snapshot(of: "Good")?.metadata.starts == 1)
        // Every dead worker was reaped; the good one's is left, and the spare
        // the fork server keeps ready for the next start.
        let server = try #require(host.scheduler.forkServerPID)
        #expect(ProcessCensus.zombieChildren(of: server).isEmpty)
        #expect(ProcessCensus.children(of: server).count == 2)
        await host.scheduler.shutdown()
    }

    @Test func aSegfaultInTheLoop() async throws {
        try await expectContained(fault: "segv", reason: "worker killed by SIGSEGV in svc_loop")
    }

    @Test func anAbortInCreate() async throws {
        try await expectContained(fault: "abort", in: "create", reason: "worker killed by SIGABRT in svc_create")
    }

    @Test func exitThreeInTheLoop() async throws {
        try await expectContained(fault: "exit", reason: "worker exited with status 3 in svc_loop")
    }

    @Test func underscoreExitInTheLoop() async throws {
        try await expectContained(fault: "_exit", reason: "worker exited with status 3 in svc_loop")
    }

    @Test func sigkillInTheLoop() async throws {
        try await expectContained(fault: "kill", reason: "worker killed by SIGKILL in svc_loop")
    }

    @Test func anEndlessLoopCaughtByTheWatchdog() async throws {
        try await expectContained(fault: "hang", extraSidecar: "watchdog_ms = 100",
                                  reason: "hung: svc_loop ran for")
    }

    @Test func aCreateThatNeverReturnsCaughtByTheStartTimeout() async throws {
        try await expectContained(fault: "hang", in: "create", extraSidecar: "start_timeout_ms = 100",
                                  reason: "hung: svc_create ran for")
    }

    @Test(.timed) func aHangInStopIsKilledAfterTheStopTimeout() async throws {
        let stopTimeout = Duration.milliseconds(300)
        let host = try await TestHost(isolation: .process, plugins: [
            (file: "Stuck.so", fixture: "faulty.c", sidecar: "stop_timeout_ms = \(stopTimeout.milliseconds)\n[config]\nfault = \"hang\"\nfault_in = \"stop\"\n"),
        ])
        try await host.events.next("Stuck") { $0.isStarted }
        let began = ContinuousClock.now
        try await host.scheduler.stop("Stuck")
        let took = ContinuousClock.now - began
        #expect(took >= stopTimeout)
        #expect(took < stopTimeout * 20, "\(took)")
        let errors = try #require(host.scheduler.snapshot(of: "Stuck")).metadata.errors
        #expect(errors.contains { $0.message.contains("svc_stop did not return within stop_timeout_ms (300 ms); worker killed by SIGKILL") }, "\(errors)")
        // Only the spare the fork server keeps ready is left. The stop ends
        // when the host sees the worker's socket close, which may come before
        // the fork server reaps it, and nothing tells the test of the reap:
        // polled, with a deadline.
        let server = try #require(host.scheduler.forkServerPID)
        let deadline = ContinuousClock.now + stopTimeout * 20
        while ProcessCensus.children(of: server).count != 1, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(ProcessCensus.children(of: server).count == 1)
        await host.scheduler.shutdown()
    }

    @Test(.timed) func aLoopThatIgnoresAStopIsKilledAfterTheStopTimeout() async throws {
        let stopTimeout = Duration.milliseconds(300)
        let host = try await TestHost(isolation: .process, plugins: [
            (file: "Busy.so", fixture: "faulty.c", sidecar: "stop_timeout_ms = \(stopTimeout.milliseconds)\n[config]\nfault = \"hang\"\nfault_after = 1\n"),
        ])
        try await host.logs.waitFor { $0.service == "Busy" && $0.message == "fault hang in loop" }
        let began = ContinuousClock.now
        await host.scheduler.shutdown()
        let took = ContinuousClock.now - began
        // The shutdown also ends the fork server, whose answers have their own deadline.
        #expect(took < stopTimeout * 20 + Limits.forkServerAnswerTimeout * 2, "\(took)")
        #expect(host.logs.entries { $0.message.contains("svc_loop did not return within stop_timeout_ms (300 ms) of the stop; killing the worker") }.count == 1)
    }

    @Test func configLogAndRequestStopWorkAcrossTheProcessBoundary() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", """
            [config]
            greeting = "from a worker"
            warn_at = 2
            stop_after = 3
            """)])
        try await host.events.next("P") { $0 == .stopped(.requested) }
        let restarted = try await host.events.next("P") { $0.isStarted }
        #expect(restarted.kind == .started(starts: 2))
        let plugin = host.logs.entries { $0.service == "P" && $0.metadata["origin"] == "plugin" }
        #expect(plugin.first?.message == "create name=P version=1.0.0 greeting=from a worker abi=1 size=\(MemoryLayout<Int>.size * 11)")
        #expect(plugin.contains { $0.level == .warning && $0.message == "warn at 2" })
        #expect(plugin.contains { $0.level == .error && $0.message == "error at 2" })
        #expect(plugin.contains { $0.message == "stop after 3 loops" })
        #expect(host.scheduler.snapshot(of: "P")?.metadata.pluginVersion == "1.0.0")
        await host.scheduler.shutdown()
    }

    @Test func theLastLogLineBeforeACrashIsNotLost() async throws {
        let host = try await TestHost(isolation: .process, plugins: [
            (file: "Bad.so", fixture: "faulty.c", sidecar: "restart = \"never\"\n[config]\nfault = \"segv\"\nfault_after = 1\n"),
        ])
        try await host.events.next("Bad") { $0.isStopped }
        // Logged by the plugin immediately before it dereferenced NULL.
        #expect(host.logs.entries { $0.message == "fault segv in loop" }.count == 1)
        await host.scheduler.shutdown()
    }

    @Test func thePluginIsNeverLoadedIntoTheHost() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "")])
        try await host.events.next("P") { $0.isStarted }
        let maps = ProcessCensus.read("/proc/self/maps") ?? ""
        #expect(!maps.contains(host.scheduler.runtimeDirectory))
        await host.scheduler.shutdown()
    }

    /// The load-time scanner loads the file in a throwaway process first: a
    /// file that cannot be loaded is refused when it is added, as a load error.
    @Test func aPluginThatCannotBeLoadedIsRefusedWithTheReason() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "")])
        let file = try await host.folder.add("missing_loop.c", as: "NoLoop.so")
        let error = await #expect(throws: PluginError.self) { try await host.scheduler.addPlugin(file: file) }
        #expect(error?.code == .missingSymbol)
        #expect(error?.reason == "does not export the required function 'svc_loop'")
        let unresolved = try await host.folder.add("unresolved.c", as: "Unresolved.so")
        let loadError = await #expect(throws: PluginError.self) { try await host.scheduler.addPlugin(file: unresolved) }
        #expect(loadError?.code == .loadFailed)
        #expect(loadError?.reason.hasPrefix("cannot be loaded: ") == true)
        #expect(loadError?.reason.contains("svc_create") == false)
        #expect(host.scheduler.snapshot(of: "NoLoop") == nil)
        await host.scheduler.shutdown()
    }

    @Test func hotReloadPicksUpAChangedFileAndRollsBackFromGarbage() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "")])
        try await host.events.next("P") { $0.isStarted }
        try await host.folder.overwriteInPlace("P.so", with: BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        try await host.scheduler.restart("P")
        let reloaded = try await host.events.next("P") { $0.isReloaded }
        #expect(reloaded.kind == .reloaded(from: "1.0.0", to: "2.0.0"))
        try await host.events.next("P") { $0.isStarted }
        try host.folder.overwriteInPlace("P.so", with: Array("garbage, not a plugin".utf8))
        try await host.scheduler.restart("P")
        let rejected = try await host.events.next("P") { $0.isReloadRejected }
        #expect(rejected.kind == .reloadRejected(reason: "not an ELF file (starts with 67 61 72 62)"))
        try await host.events.next("P") { $0.isStarted }
        #expect(host.scheduler.snapshot(of: "P")?.metadata.pluginVersion == "2.0.0")
        try await host.logs.waitFor { $0.service == "P" && $0.message.hasPrefix("create name=P version=2.0.0") && $0.metadata["origin"] == "plugin" }
        // A new version whose svc_create fails also rolls back.
        try await host.folder.overwriteInPlace("P.so", with: BuiltFixtures.shared.bytes(
            "probe.c", defines: ["PROBE_VERSION=\"3.0.0\"", "PROBE_CREATE_RESULT=-9"]))
        try await host.scheduler.restart("P")
        let refused = try await host.events.next("P") { $0.isReloadRejected }
        #expect(refused.kind == .reloadRejected(reason: "svc_create of the new version 3.0.0 returned -9"))
        try await host.events.next("P") { $0.isStarted }
        #expect(host.scheduler.snapshot(of: "P")?.metadata.pluginVersion == "2.0.0")
        await host.scheduler.shutdown()
    }
}
