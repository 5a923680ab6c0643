import Foundation
import Testing

@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// `svc_host.fd_keep` / `fd_load` and `reload = "overlap"`: a server keeps
/// its listening socket across reloads, and an overlapping reload replaces
/// it with no connection refused and no request lost; kept descriptors are
/// bounded, rolled back with a refused version, listed, and closed with the service.
@Suite("Kept descriptors and overlapping reloads")
struct KeptDescriptorTests {
    private static let version2 = ["ECHO_VERSION=\"2.0.0\""]

    private static func echoSidecar(port: UInt16, overlap: Bool, keep: Bool = true, doneOnStop: Bool = false) -> String {
        "stop_timeout_ms = 3000\n\(overlap ? "reload = \"overlap\"\n" : "")[config]\nport = \(port)\nkeep = \(keep)\ndone_on_stop = \(doneOnStop)\n"
    }

    /// A host running Echo.so (its sidecar made for a free port), listening,
    /// and a client it has answered ten times already.
    private static func servingEcho(isolation: Isolation = .thread, sidecar: (UInt16) -> String) async throws -> (TestHost, EchoClient) {
        let port = try EchoClient.freePort()
        let host = try await TestHost(isolation: isolation, plugins: [(file: "Echo.so", fixture: "echo_server.c", sidecar: sidecar(port))])
        try await host.logs.waitFor { $0.service == "Echo" && $0.message == "listening version=1.0.0 kept=0" }
        let client = EchoClient(port: port)
        try await client.waitForAnswers(10)
        return (host, client)
    }

    /// Two builds of the echo server, 2.0.0 and 1.0.0, to alternate.
    private static func alternatingVersions() async throws -> [[UInt8]] {
        [try await BuiltFixtures.shared.bytes("echo_server.c", defines: version2), try await BuiltFixtures.shared.bytes("echo_server.c")]
    }

    /// 50 reloads alternating two versions while a client sends requests
    /// without pause, one connection each: with the listener kept and the
    /// reloads overlapping, every request is answered.
    /// Half the runs are of a server that ends its run (SVC_DONE) when told
    /// to stop: the old version ending so at the handover hands over all the same.
    // The client sends without pause: it keeps a core busy.
    @Test(.loadsTheMachine, arguments: [(Isolation.thread, false), (.process, false), (.thread, true), (.process, true)])
    func anEchoServerReloadedFiftyTimesWithOverlapRefusesNothingAndLosesNothing(isolation: Isolation, doneOnStop: Bool) async throws {
        let (host, client) = try await Self.servingEcho(isolation: isolation) {
            Self.echoSidecar(port: $0, overlap: true, doneOnStop: doneOnStop)
        }
        let (folder, logs, scheduler, events) = (host.folder, host.logs, host.scheduler, host.events)
        let versions = try await Self.alternatingVersions()
        for reload in 0..<50 {
            try folder.overwriteInPlace("Echo.so", with: versions[reload % 2])
            #expect(await scheduler.restartChanged() == ["Echo"])
            try await events.next("Echo") { $0.isReloaded }
            // Requests are answered between reloads, by the version just created.
            try await client.waitForAnswers(3)
        }
        let tally = await client.stop()
        #expect(tally.refused == 0, "\(tally)")
        #expect(tally.lost == 0, "\(tally)")
        #expect(tally.answered >= 150)
        let snapshot = try #require(scheduler.snapshot(of: "Echo"))
        #expect(snapshot.metadata.reloadsByResult[.ok] == 50)
        #expect(snapshot.metadata.starts == 1, "no reload was a stop and a start")
        // Every new version read the listener the first one bound.
        #expect(logs.entries { $0.service == "Echo" && $0.message.hasPrefix("listening ") && $0.message.hasSuffix("kept=1") }.count == 50)
        #expect(scheduler.status(of: "Echo")?.keptDescriptors == ["listener"])
        await scheduler.shutdown()
    }

    /// The same server closing its listener in svc_stop and reloaded in the
    /// default order (stop, then create): connections are refused in the gap.
    @Test(.loadsTheMachine) func withoutOverlapOrAKeptListenerAReloadRefusesConnections() async throws {
        let (host, client) = try await Self.servingEcho { Self.echoSidecar(port: $0, overlap: false, keep: false) }
        let (folder, scheduler, events) = (host.folder, host.scheduler, host.events)
        let versions = try await Self.alternatingVersions()
        var reloads = 0
        while client.current.refused == 0, reloads < 50 {
            try folder.overwriteInPlace("Echo.so", with: versions[reloads % 2])
            #expect(await scheduler.restartChanged() == ["Echo"])
            try await events.next("Echo") { $0.isReloaded }
            try await client.waitForAnswers(3)
            reloads += 1
        }
        let tally = await client.stop()
        #expect(tally.refused > 0, "\(reloads) reloads refused nothing: \(tally)")
        await scheduler.shutdown()
    }

    /// A new version whose create keeps a socket of its own under the
    /// listener's name and fails: the old version runs on, serving all the
    /// while, and the next good version reads the old listener, not the failed one's.
    @Test(.loadsTheMachine, arguments: [Isolation.thread, .process])
    func aFailedOverlappingReloadLeavesTheOldVersionServingWithItsDescriptors(isolation: Isolation) async throws {
        let (host, client) = try await Self.servingEcho(isolation: isolation) { Self.echoSidecar(port: $0, overlap: true) }
        let (folder, logs, scheduler, events) = (host.folder, host.logs, host.scheduler, host.events)

        try folder.overwriteInPlace("Echo.so", with: try await BuiltFixtures.shared.bytes(
            "echo_server.c", defines: ["ECHO_CREATE_FAILS", "ECHO_VERSION=\"3.0.0\""]))
        #expect(await scheduler.restartChanged() == ["Echo"])
        let rejected = try await events.next("Echo") { $0.isReloadRejected }
        #expect(rejected.kind == .reloadRejected(reason: "svc_create of the new version 3.0.0 returned -9"))
        try await client.waitForAnswers(10)
        #expect(scheduler.snapshot(of: "Echo")?.metadata.starts == 1, "the old version was never stopped")

        try folder.overwriteInPlace("Echo.so", with: try await BuiltFixtures.shared.bytes("echo_server.c", defines: Self.version2))
        #expect(await scheduler.restartChanged() == ["Echo"])
        try await events.next("Echo") { $0.isReloaded }
        try await logs.waitFor { $0.service == "Echo" && $0.message == "listening version=2.0.0 kept=1" }
        try await client.waitForAnswers(10)
        let tally = await client.stop()
        #expect(tally.refused == 0 && tally.lost == 0, "\(tally)")
        await scheduler.shutdown()
    }

    /// A new version whose svc_create does not return: the reload waits for
    /// it only so long, the old version serves all the while, and then a
    /// thread-isolated one takes over once its create returns (a thread
    /// cannot be interrupted), a worker is killed at start_timeout_ms.
    // Its bound is a wide ratio of its own timeouts; its client keeps a core busy.
    @Test(.loadsTheMachine, arguments: [Isolation.thread, .process])
    func aNewVersionStuckInCreateHoldsUpNeitherTheOldOneNorTheReload(isolation: Isolation) async throws {
        let releaseFile = NSTemporaryDirectory() + "release-\(UUID().uuidString)"
        defer { unlink(releaseFile) }
        let (host, client) = try await Self.servingEcho(isolation: isolation) { port in """
            reload = "overlap"
            stop_timeout_ms = 500
            start_timeout_ms = 300
            [config]
            port = \(port)
            release_file = "\(releaseFile)"
            """
        }
        let (folder, logs, scheduler, events) = (host.folder, host.logs, host.scheduler, host.events)

        try folder.overwriteInPlace("Echo.so", with: try await BuiltFixtures.shared.bytes(
            "echo_server.c", defines: ["ECHO_CREATE_WAITS", "ECHO_VERSION=\"3.0.0\""]))
        let service = try #require(scheduler.service(named: "Echo"))
        let began = ContinuousClock.now
        #expect(await scheduler.restartChanged() == ["Echo"])
        #expect(ContinuousClock.now - began < ServiceManager.overlapWait(for: service) * 2)
        try await client.waitForAnswers(10)
        if isolation == .thread {
            try await logs.waitFor { $0.service == "Echo" && $0.message == "create waits" }
            #expect(logs.entries { $0.message.contains("the overlapping reload's new version has not started within") }.count == 1)
            FileManager.default.createFile(atPath: releaseFile, contents: nil)
            try await events.next("Echo") { $0.isReloaded }
            try await logs.waitFor { $0.service == "Echo" && $0.message == "listening version=3.0.0 kept=1" }
        } else {
            try await events.next("Echo") { $0.isReloadRejected }
        }
        try await client.waitForAnswers(10)
        let tally = await client.stop()
        #expect(tally.refused == 0 && tally.lost == 0, "\(tally)")
        await scheduler.shutdown()
    }

    /// A plugin that keeps one descriptor under 10,000 names: the first 256
    /// are kept, the rest refused with -ENOSPC and one clear log line; `ctl
    /// status` lists them; removing the service closes every one (the host's
    /// descriptor count is back where it was).
    @Test(arguments: ["thread", "process"])
    func tenThousandKeptDescriptorsAreRefusedPastTheLimitAndClosedWithTheService(isolation: String) async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 100\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", isolation])
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        let before = ProcessCensus.openDescriptors(of: host.pid)

        let port = try EchoClient.freePort()
        try await folder.add("echo_server.c", as: "Echo.so",
                             sidecar: "[config]\nport = \(port)\nkeep = false\nkeep_many = 10000\n")
        host.send(SIGHUP)
        try await host.waitForOutput("kept \(KeptState.maxDescriptors) of 10000, first refusal \(-ENOSPC)")
        try await host.waitForOutput("service=Echo [ServiceHost] started")
        #expect(host.outputText.contains("fd_keep(\"extra-256\") refused: the service keeps 256 descriptors already, the most one may (SVC_FD_MAX_KEPT); forget one (fd_keep(name, -1)) first"),
                "\(host.outputText)")
        #expect(host.outputText.components(separatedBy: "refused: the service keeps").count == 2, "logged once per run")
        #expect(ProcessCensus.openDescriptors(of: host.pid) >= before + KeptState.maxDescriptors)
        let status = try await HostProcess.run(["ctl", "--socket", host.controlSocket, "status", "Echo"])
        #expect(status.output.contains("kept: descriptors extra-0, extra-1, extra-10, "), "\(status.output)")
        #expect(status.output.contains(", extra-99\n"), "\(status.output)")

        try FileManager.default.removeItem(atPath: "\(folder.path)/Echo.so")
        try FileManager.default.removeItem(atPath: "\(folder.path)/Echo.toml")
        host.send(SIGHUP)
        try await host.waitForOutput("reload: ", count: 2)
        // Nothing announces the last reference's release; polled, with a deadline.
        let deadline = ContinuousClock.now + .seconds(10)
        while ProcessCensus.openDescriptors(of: host.pid) != before, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(ProcessCensus.openDescriptors(of: host.pid) == before, "\(ProcessCensus.describeDescriptors(of: host.pid))")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    /// A changed sidecar replaces the service with one of the new values; what
    /// it kept goes to the new one.
    @Test(arguments: [Isolation.thread, .process])
    func aChangedSidecarKeepsTheStateAndDescriptors(isolation: Isolation) async throws {
        let port = try EchoClient.freePort()
        let host = try await TestHost(isolation: isolation, plugins: [
            (file: "Counter.so", fixture: "counter_state.c", sidecar: "interval_ms = 1\n[config]\nlog_at = 3\n"),
            (file: "Echo.so", fixture: "echo_server.c", sidecar: Self.echoSidecar(port: port, overlap: false)),
        ])
        let (folder, logs, scheduler) = (host.folder, host.logs, host.scheduler)
        try await logs.waitFor { $0.service == "Counter" && $0.message == "count 3" }
        try await logs.waitFor { $0.service == "Echo" && $0.message == "listening version=1.0.0 kept=0" }
        try folder.sidecar(for: "Counter.so", "interval_ms = 2\n[config]\nlog_at = 4\n")
        try folder.sidecar(for: "Echo.so", Self.echoSidecar(port: port, overlap: true))
        let report = try await scheduler.reload(directory: folder.path)
        #expect(Set(report.changed) == ["Counter", "Echo"])
        let created = try await logs.waitFor(count: 2) { $0.service == "Counter" && $0.message.hasPrefix("create ") }
        let count = Int(created.message.split(separator: " ").first { $0.hasPrefix("count=") }!.dropFirst("count=".count))!
        #expect(count >= 3, "\(created.message)")
        try await logs.waitFor { $0.service == "Echo" && $0.message == "listening version=1.0.0 kept=1" }
        await scheduler.shutdown()
    }

    /// The old version's svc_stop runs on the service's thread, between two
    /// loop turns, when the new version takes over: watchdog_ms times loop
    /// calls, not that stop, however long it takes (here five times the
    /// watchdog). It used to be reported as a hung svc_loop.
    @Test(.timed) func theOldVersionsStopAtAHandoverIsNotTimedAsALoopCall() async throws {
        let watchdog = Duration.milliseconds(200)
        let host = try await TestHost(probes: [("P.so", """
            reload = "overlap"
            interval_ms = 10
            watchdog_ms = \(watchdog.milliseconds)
            [config]
            stop_block_ms = \((watchdog * 5).milliseconds)
            """)])
        try await host.events.first("P") { $0.isStarted }
        let second = try await BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""])
        try host.folder.overwriteInPlace("P.so", with: second)
        #expect(await host.scheduler.restartChanged() == ["P"])
        try await host.events.next("P") { $0.isReloaded }
        #expect(host.logs.entries.contains { $0.service == "P" && $0.message.hasPrefix("stop after ") }, "the old version's svc_stop ran")
        #expect(!host.logs.entries.contains { $0.message.hasPrefix("hung: ") }, "\(host.logs.entries.filter { $0.message.hasPrefix("hung: ") })")
        #expect(host.scheduler.status(of: "P")?.lastError == nil)
        await host.scheduler.shutdown()
    }
}
