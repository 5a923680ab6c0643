import Foundation
import Logging
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// A restart picks up a changed plugin file; a bad new file rolls back.
@Suite("Hot reload")
struct HotReloadTests {
    @Test func v1ThenV2InPlaceThenGarbageRollsBackToV2() async throws {
        let host = try await TestHost(probes: [("P.so", "")])
        let (folder, logs, scheduler, events) = (host.folder, host.logs, host.scheduler, host.events)
        let file = "\(folder.path)/P.so"
        try await events.next("P") { $0.isStarted }
        #expect(scheduler.snapshot(of: "P")?.metadata.pluginVersion == "1.0.0")

        // Overwrite in place, as `cp v2.so P.so` does: same inode, truncated then written.
        try await folder.overwriteInPlace("P.so", with: BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        try await scheduler.restart("P")
        let reloaded = try await events.next("P") { $0.isReloaded }
        #expect(reloaded.kind == .reloaded(from: "1.0.0", to: "2.0.0"))
        try await events.next("P") { $0.isStarted }
        #expect(scheduler.snapshot(of: "P")?.metadata.pluginVersion == "2.0.0")
        #expect(logs.entries { $0.message == "reloaded \(file): 1.0.0 -> 2.0.0" }.count == 1)
        try await logs.waitFor { $0.service == "P" && $0.message.hasPrefix("create name=P version=2.0.0") }

        // Garbage: the restart rolls back and keeps running v2.
        try folder.overwriteInPlace("P.so", with: Array("this is not a shared object".utf8))
        try await scheduler.restart("P")
        let rejected = try await events.next("P") { $0.isReloadRejected }
        #expect(rejected.kind == .reloadRejected(reason: "not an ELF file (starts with 74 68 69 73)"))
        let started = try await events.next("P") { $0.isStarted }
        #expect(started.kind == .started(starts: 3))
        #expect(scheduler.snapshot(of: "P")?.metadata.pluginVersion == "2.0.0")
        #expect(scheduler.snapshot(of: "P")?.state == .started)
        let line = try #require(logs.entries { $0.level == .error && $0.message.hasPrefix("reload of \(file) failed") }.first)
        #expect(line.message.contains("not an ELF file"))
        #expect(line.message.hasSuffix("keeping version 2.0.0"))
        #expect(logs.entries { $0.message.hasPrefix("create name=P version=2.0.0") }.count == 2)

        // The rejected file is not tried again until it changes again.
        try await scheduler.restart("P")
        try await events.next("P") { $0.isStarted }
        #expect(logs.entries { $0.message.hasPrefix("reload of \(file) failed") }.count == 1)
        await scheduler.shutdown()
    }

    @Test func aNewVersionWhoseCreateFailsRollsBack() async throws {
        let host = try await TestHost(probes: [("P.so", "")])
        let (folder, logs, scheduler, events) = (host.folder, host.logs, host.scheduler, host.events)
        try await events.next("P") { $0.isStarted }

        try await folder.overwriteInPlace("P.so", with: BuiltFixtures.shared.bytes(
            "probe.c", defines: ["PROBE_VERSION=\"3.0.0\"", "PROBE_CREATE_RESULT=-9"]))
        try await scheduler.restart("P")
        let rejected = try await events.next("P") { $0.isReloadRejected }
        #expect(rejected.kind == .reloadRejected(reason: "svc_create of the new version 3.0.0 returned -9"))
        try await events.next("P") { $0.isStarted }
        #expect(scheduler.snapshot(of: "P")?.metadata.pluginVersion == "1.0.0")
        #expect(logs.entries { $0.message.hasPrefix("create name=P version=1.0.0") }.count == 2)
        await scheduler.shutdown()
    }

    @Test func aServiceThatStopsItselfPicksUpARebuiltFileOnRecovery() async throws {
        let host = try await TestHost(probes: [("P.so", "interval_ms = 1\n[config]\nstop_after = 1000000\n")])
        let (folder, scheduler, events) = (host.folder, host.scheduler, host.events)
        try await events.next("P") { $0.isStarted }
        // Replace the file by rename (how most build tools write), then let
        // the service stop itself: recovery restarts it with the new file.
        let replacement = folder.directory.file("P.so.tmp")
        try await Data(BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""])).write(to: replacement)
        #expect(rename(replacement.path, folder.directory.file("P.so").path) == 0)
        scheduler.service(named: "P")?.requestStop()
        let reloaded = try await events.next("P") { $0.isReloaded }
        #expect(reloaded.kind == .reloaded(from: "1.0.0", to: "2.0.0"))
        await scheduler.shutdown()
    }

    @Test func restartChangedRestartsOnlyServicesWhoseFileChanged() async throws {
        let host = try await TestHost(probes: [("Changes.so", ""), ("Stays.so", "")])
        let (folder, scheduler, events) = (host.folder, host.scheduler, host.events)
        try await events.first("Changes") { $0.isStarted }
        try await events.first("Stays") { $0.isStarted }
        try await folder.overwriteInPlace("Changes.so", with: BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        #expect(await scheduler.restartChanged() == ["Changes"])
        try await events.next("Changes") { $0.isReloaded }
        #expect(scheduler.snapshot(of: "Stays")?.metadata.starts == 1)
        await scheduler.shutdown()
    }

    @Test func newPluginsAreStartedOnceAndRunningOnesAreLeftAlone() async throws {
        let host = try await TestHost(probes: [("Old.so", "")])
        try await host.events.next("Old") { $0.isStarted }
        try await host.folder.add(as: "New.so")
        let first = try await host.scheduler.startNewPlugins(directory: host.folder.path)
        #expect(first.started == ["New"])
        #expect(first.errors.isEmpty)
        try await host.events.next("New") { $0.isStarted }
        let second = try await host.scheduler.startNewPlugins(directory: host.folder.path)
        #expect(second.started.isEmpty)
        #expect(host.scheduler.snapshot(of: "Old")?.metadata.starts == 1)
        await host.scheduler.shutdown()
    }
}

/// A file rewritten in place with as many bytes within one timestamp step of
/// being read keeps its identity (size, inode, times); the content tells.
@Suite("Racy rewrites")
struct RacyRewriteTests {
    private static func version(of path: String, readAt: timespec, content: [UInt8]) throws -> StagedPlugin {
        StagedPlugin(file: path, identity: try FileIdentity.of(path: path).get(), privateCopy: "/nonexistent",
                     containsSwiftCode: false, ownsCopy: false, content: ContentDigest(content), readAt: readAt)
    }

    private static func shifted(_ time: timespec, by nanoseconds: Int64) -> timespec {
        let total = Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec) + nanoseconds
        return timespec(tv_sec: Int(total / 1_000_000_000), tv_nsec: Int(total % 1_000_000_000))
    }

    @Test func aSameIdentityRewriteIsFoundByContentOnlyWhileItCouldHaveKeptItsIdentity() throws {
        let folder = try PluginFolder()
        let written: [UInt8] = Array("the version on disk".utf8)
        let path = try folder.write(written, as: "P.so")
        let changed = try FileIdentity.of(path: path).get().changed
        let logger = Logger(label: "test")
        let racy = Self.shifted(changed, by: 1_000_000)  // read a millisecond after the last change

        // Read that soon, with other bytes than the file has now: a rewrite kept the identity.
        let rewritten = PluginVersions(file: path, current: try Self.version(of: path, readAt: racy, content: Array("the version we loaded".utf8)), name: nil)
        #expect(rewritten.fileChanged)
        #expect(rewritten.changedFile(logger: logger) != nil)

        // The same bytes: unchanged.
        let same = PluginVersions(file: path, current: try Self.version(of: path, readAt: racy, content: written), name: nil)
        #expect(!same.fileChanged)

        // Read a full step after the last change: a rewrite would have moved the timestamps, so identity decides.
        let settled = Self.shifted(changed, by: PluginVersions<StagedPlugin>.timestampStep + 1)
        let late = PluginVersions(file: path, current: try Self.version(of: path, readAt: settled, content: Array("other".utf8)), name: nil)
        #expect(!late.fileChanged)
    }
}
