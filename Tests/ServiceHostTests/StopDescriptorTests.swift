import Foundation
import Testing
@testable import ServiceHost

/// The members appended to `svc_host` in ABI 1 (stop_requested,
/// stop_descriptor) and the header-only helpers (svc_logf, typed config),
/// and a plugin built against the original ABI 1 header.
@Suite("Stop descriptor and header helpers")
struct StopDescriptorTests {
    /// How long the plugin's `svc_stop` may be waited for; the stop must
    /// come long before it, by the plugin returning, not by being abandoned.
    private static let stopTimeout = Duration.seconds(10)

    @Test(.timed, arguments: [Isolation.thread, .process], ["poll", "compute"])
    func aLoopBlockedOnTheStopDescriptorOrPollingStopRequestedReturnsWhenTheStopIsOrdered(isolation: Isolation, mode: String) async throws {
        let host = try await TestHost(isolation: isolation, plugins: [
            (file: "Waits.so", fixture: "stop_wait.c",
             sidecar: "stop_timeout_ms = \(Self.stopTimeout.milliseconds)\n[config]\nmode = \"\(mode)\"\n"),
        ])
        try await host.logs.waitFor("waiting in \(mode)") { $0.message == "waiting in \(mode) (run 1)" }
        let began = ContinuousClock.now
        try await host.scheduler.stop("Waits")
        let took = ContinuousClock.now - began
        let woken = mode == "poll" ? "woken by the stop descriptor" : "saw stop_requested"
        #expect(host.logs.entries.contains { $0.message == woken }, "\(host.logs.entries)")
        #expect(host.logs.entries.contains { $0.message == "stop" }, "svc_stop ran: the run ended, it was not abandoned")
        #expect(host.scheduler.status(of: "Waits")?.state == .stopped)
        #expect(host.scheduler.status(of: "Waits")?.lastError == nil)
        // Without the descriptor the loop would block for an hour, and the
        // stop end in an abandon at stop_timeout_ms: anything shorter is the
        // plugin's own return (a loaded machine delays it, never to that).
        #expect(took < Self.stopTimeout, "stopped in \(took) (\(isolation), \(mode))")
        print("stop descriptor (\(isolation), \(mode)): stop order to svc_stop returned in \(took)")

        // And again after a start: the descriptor was cleared for the new run.
        try host.scheduler.start("Waits")
        // A worker loads the image afresh, so its count of runs starts again.
        try await host.logs.waitFor(count: 2, "the second run waiting") { $0.message.hasPrefix("waiting in \(mode) (run ") }
        #expect(host.logs.entries.filter { $0.message == woken }.count == 1, "the new run blocks again instead of ending at once")
        try await host.scheduler.stop("Waits")
        #expect(host.logs.entries.filter { $0.message == woken }.count == 2)
        await host.scheduler.shutdown()
    }

    @Test func theTypedConfigHelpersTellAbsentFromInvalid() async throws {
        let host = try await TestHost(plugins: [
            (file: "Good.so", fixture: "stop_wait.c", sidecar: "[config]\ncount = 1_000\nratio = 2.5\nflag = false\n"),
            (file: "Bad.so", fixture: "stop_wait.c", sidecar: "[config]\ncount = \"many\"\nratio = true\nflag = 3\n"),
            (file: "None.so", fixture: "stop_wait.c", sidecar: ""),
        ])
        for (service, line) in [("Good", "config count=1000 (ok) ratio=2.5 (ok) flag=0 (ok)"),
                                ("Bad", "config count=7 (invalid) ratio=0.5 (invalid) flag=1 (invalid)"),
                                ("None", "config count=7 (absent) ratio=0.5 (absent) flag=1 (absent)")] {
            try await host.logs.waitFor(line) { $0.service == service && $0.message.hasPrefix("config ") }
            #expect(host.logs.entries.contains { $0.service == service && $0.message == line },
                    "\(host.logs.entries.filter { $0.service == service })")
        }
        await host.scheduler.shutdown()
    }

    @Test(arguments: [Isolation.thread, .process])
    func aPluginBuiltAgainstTheOriginalHeaderRunsUnchanged(isolation: Isolation) async throws {
        let folder = try PluginFolder()
        let original = PluginBuilder.fixtures.appendingPathComponent("abi_v1_original")
        _ = try await Blocking.run {
            try PluginBuilder.buildC("probe.c", to: folder.directory.file("Old.so"), include: original)
        }
        try folder.sidecar(for: "Old.so", "interval_ms = 5\nrestart = \"never\"\n[config]\ndone_after = 3\n")
        let scheduler = try Scheduler(configuration: .init(isolation: isolation, workerExecutable: try HostProcess.binary.path),
                                      logger: LogCapture().logger)
        let events = EventWaiter(scheduler)
        let errors = try await scheduler.addPlugins(directory: folder.path)
        #expect(errors.isEmpty, "\(errors)")
        scheduler.startAll()
        try await events.first("Old", \.isStarted)
        try await events.first("Old") { $0 == .stopped(.finished) }
        #expect(scheduler.samples().first?.loops == 3)
        await scheduler.shutdown()
    }
}
