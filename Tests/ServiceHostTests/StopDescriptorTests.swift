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

    /// With `reload = "overlap"` (thread isolation), a handover makes only
    /// the old version's stop descriptor readable: a thread the new version
    /// started in svc_create, polling its own, sleeps on until the service is
    /// stopped (it used to be woken by the handover, to find stop_requested() 0).
    @Test func aHandoverWakesOnlyTheOldVersionsStopDescriptor() async throws {
        let host = try await TestHost(plugins: [
            (file: "Waits.so", fixture: "stop_wait.c", sidecar: "reload = \"overlap\"\n[config]\nhelper = true\n"),
        ])
        try await host.logs.waitFor("the first version waiting") { $0.message == "waiting in poll (run 1)" }
        let second = try await BuiltFixtures.shared.bytes("stop_wait.c", defines: ["STOP_WAIT_VERSION=\"2\""])
        try host.folder.overwriteInPlace("Waits.so", with: second)
        #expect(await host.scheduler.restartChanged() == ["Waits"])
        try await host.events.next("Waits") { $0.isReloaded }
        // The old version's loop and helper were woken by the handover; its svc_stop joined the helper.
        #expect(host.logs.entries.contains { $0.message == "helper (version 1) woken, stop_requested=1" }, "\(host.logs.entries)")
        try await host.logs.waitFor(count: 2, "the new version waiting") { $0.message.hasPrefix("waiting in poll") }
        try await host.scheduler.stop("Waits")
        // Its svc_stop joined its helper, so the helper's one line is in: written after the order.
        let helperLines = host.logs.entries.filter { $0.message.hasPrefix("helper (version 2)") }.map(\.message)
        #expect(helperLines == ["helper (version 2) woken, stop_requested=1"])
        await host.scheduler.shutdown()
    }

    /// Each binding slot's descriptor is readable exactly while its run is
    /// asked to end: a handover asks one slot's run, a stop every slot's.
    @Test func eachSlotsDescriptorIsReadableOnlyWhileItsRunIsAskedToEnd() {
        let signal = StopSignal()
        let first = signal.descriptor(slot: 0)
        let second = signal.descriptor(slot: 1)
        #expect(first >= 0 && second >= 0 && first != second)
        #expect(signal.descriptor(slot: 0) == first, "made once")
        #expect(!Self.readable(first) && !Self.readable(second))
        signal.raiseHandover(slot: 0)
        #expect(Self.readable(first) && !Self.readable(second))
        signal.clearHandover()
        #expect(!Self.readable(first) && !Self.readable(second))
        signal.raiseHandover(slot: 1)
        #expect(!Self.readable(first) && Self.readable(second))
        signal.raise(.ordered)
        #expect(Self.readable(first) && Self.readable(second), "a stop during a handover asks both runs")
        signal.clearHandover()
        #expect(Self.readable(first) && Self.readable(second), "the order stays")
        signal.reset()
        #expect(!Self.readable(first) && !Self.readable(second))
    }

    @Test func aDescriptorMadeAfterARequestShowsItWhenItsRunIsAsked() {
        let signal = StopSignal()
        signal.raiseHandover(slot: 1)
        #expect(!Self.readable(signal.descriptor(slot: 0)))
        #expect(Self.readable(signal.descriptor(slot: 1)))
        signal.raise(.requested)
        #expect(Self.readable(signal.descriptor(slot: 0)))
    }

    private static func readable(_ descriptor: Int32) -> Bool {
        var wanted = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        return poll(&wanted, 1, 0) == 1
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
