import Foundation
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// A plugin's load-time code (constructors) runs first in a throwaway scan
/// process: a crash, an exit or a hang there refuses that version with a
/// reason and harms nothing else.
@Suite("Load-time scanner")
struct LoadScannerTests {
    private static let faults: [(define: String, reason: String)] = [
        ("CONSTRUCTOR_FAULT=1", "constructor killed by SIGSEGV while loading"),
        ("CONSTRUCTOR_FAULT=2", "exited with status 7 while loading"),
        ("CONSTRUCTOR_FAULT=3", "did not finish loading within 300 ms"),
    ]

    @Test(arguments: [Isolation.thread, .process])
    func aConstructorThatCrashesExitsOrHangsIsRefusedAndOthersKeepRunning(isolation: Isolation) async throws {
        let host = try await TestHost(isolation: isolation, probes: [("P.so", "")])
        try await host.events.next("P") { $0.isStarted }
        for (index, fault) in Self.faults.enumerated() {
            let file = try await host.folder.add("constructor.c", as: "Bad\(index).so", defines: [fault.define],
                                                 sidecar: "start_timeout_ms = 300\n")
            let error = await #expect(throws: PluginError.self) { try await host.scheduler.addPlugin(file: file) }
            #expect(error?.code == .loadFailed)
            #expect(error?.reason == fault.reason)
            #expect(host.scheduler.snapshot(of: "Bad\(index)") == nil)
        }
        #expect(host.scheduler.snapshot(of: "P")?.state == .started)
        try await host.scheduler.restart("P")
        try await host.events.next("P") { $0.isStarted }
        await host.scheduler.shutdown()
    }

    /// The async `addPlugin` scans on a thread of its own: with more scans
    /// in flight than the cooperative pool has threads, a task on the pool
    /// still runs. That task is what releases the scans' constructors, so
    /// with the scans on the pool it could run only after one timed out.
    @Test func scansInFlightLeaveTheCooperativePoolFree() async throws {
        let host = try await TestHost(probes: [], start: false)
        let releaseDirectory = try TemporaryDirectory("release")
        let release = releaseDirectory.file("released").path
        let count = ProcessInfo.processInfo.activeProcessorCount + 1
        var files: [String] = []
        for index in 0..<count {
            // Each version its own bytes, so that no scan's verdict is reused for another.
            files.append(try await host.folder.add(
                "constructor.c", as: "Held\(index).so",
                defines: ["CONSTRUCTOR_FAULT=5", "CONSTRUCTOR_RELEASE=\"\(release)\"", "CONSTRUCTOR_VERSION=\"1.\(index)\""],
                sidecar: "start_timeout_ms = 60000\n"))
        }
        let happened = ReportLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for file in files {
                group.addTask {
                    _ = try await host.scheduler.addPlugin(file: file)
                    happened.add("added")
                }
            }
            group.addTask {
                happened.add("released")
                #expect(FileManager.default.createFile(atPath: release, contents: nil))
            }
            try await group.waitForAll()
        }
        #expect(happened.all == ["released"] + Array(repeating: "added", count: count))
        #expect(host.scheduler.snapshot().count == count)
        await host.scheduler.shutdown()
        withExtendedLifetime(releaseDirectory) {}
    }

    @Test func aReloadToAConstructorThatCrashesRollsBack() async throws {
        let host = try await TestHost(plugins: [("C.so", "constructor.c", "")])
        try await host.events.next("C") { $0.isStarted }
        try host.folder.overwriteInPlace("C.so", with: try await BuiltFixtures.shared.bytes(
            "constructor.c", defines: ["CONSTRUCTOR_FAULT=1", "CONSTRUCTOR_VERSION=\"2.0.0\""]))
        try await host.scheduler.restart("C")
        let rejected = try await host.events.next("C") { $0.isReloadRejected }
        #expect(rejected.kind == .reloadRejected(reason: "constructor killed by SIGSEGV while loading"))
        try await host.events.next("C") { $0.isStarted }
        #expect(host.scheduler.snapshot(of: "C")?.metadata.pluginVersion == "1.0.0")
        #expect(host.scheduler.snapshot(of: "C")?.state == .started)
        await host.scheduler.shutdown()
    }

    /// `fallocate` and a slow copy leave valid headers followed by zeros: the
    /// scan refuses it, the host never `dlopen`s it.
    @Test func aHalfWrittenFileIsRefusedOnReload() async throws {
        let host = try await TestHost(probes: [("P.so", "")])
        try await host.events.next("P") { $0.isStarted }
        let complete = try await BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""])
        var halfWritten = [UInt8](repeating: 0, count: complete.count)
        halfWritten.replaceSubrange(0..<4096, with: complete[0..<4096])
        try host.folder.overwriteInPlace("P.so", with: halfWritten)
        try await host.scheduler.restart("P")
        let rejected = try await host.events.next("P") { $0.isReloadRejected }
        guard case .reloadRejected(let reason) = rejected.kind else { Issue.record("\(rejected)"); return }
        #expect(!reason.isEmpty)
        try await host.events.next("P") { $0.isStarted }
        #expect(host.scheduler.snapshot(of: "P")?.metadata.pluginVersion == "1.0.0")
        await host.scheduler.shutdown()
    }

    @Test func theVerdictIsCachedByFileIdentity() async throws {
        let host = try await TestHost(probes: [("P.so", "")])
        try await host.events.next("P") { $0.isStarted }
        let scans = host.scheduler.scanCount
        #expect(scans == 1)
        // The same file staged again (another service over it, a restart) starts no scan.
        try await host.scheduler.addPlugin(file: "\(host.folder.path)/P.so", name: "Q")
        try await host.scheduler.restart("P")
        try await host.events.next("P") { $0.isStarted }
        #expect(host.scheduler.scanCount == scans)
        // A changed file is scanned again.
        try host.folder.overwriteInPlace("P.so", with: try await BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        try await host.scheduler.restart("P")
        try await host.events.next("P") { $0.isReloaded }
        #expect(host.scheduler.scanCount == scans + 1)
        // Bytes seen before, under a new modification time, are not scanned again.
        try host.folder.overwriteInPlace("P.so", with: try await BuiltFixtures.shared.bytes("probe.c"))
        try await host.scheduler.restart("P")
        try await host.events.next("P") { $0.isReloaded }
        #expect(host.scheduler.scanCount == scans + 1)
        await host.scheduler.shutdown()
    }
}
