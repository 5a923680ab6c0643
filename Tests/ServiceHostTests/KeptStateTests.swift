import Foundation
import Testing

@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// `svc_host.state_save` / `state_load`: a service's bytes survive its
/// restarts and reloads to other versions, go back to the old version when a
/// new one's create fails, are bounded, and go with the service.
@Suite("Kept state")
struct KeptStateTests {
    /// The counts of the counter's "create" and "stop" lines, in order.
    private static func counts(_ logs: LogCapture) -> [(step: String, count: Int)] {
        logs.entries { $0.service == "Counter" }.compactMap { entry in
            let words = entry.message.split(separator: " ")
            guard let step = words.first, step == "create" || step == "stop",
                  let field = words.first(where: { $0.hasPrefix("count=") }),
                  let count = Int(field.dropFirst("count=".count)) else { return nil }
            return (String(step), count)
        }
    }

    private static let version2 = ["COUNTER_FORMAT=2", "COUNTER_VERSION=\"2.0.0\""]

    /// 100 reloads alternating two versions that write different formats,
    /// then a version whose create saves its own state and fails: every run
    /// begins with the count the run before it ended with.
    @Test(arguments: [Isolation.thread, .process])
    func aCountSurvivesAHundredReloadsAlternatingTwoVersionsAndARollback(isolation: Isolation) async throws {
        let host = try await TestHost(isolation: isolation, plugins: [(file: "Counter.so", fixture: "counter_state.c",
                                                 sidecar: "interval_ms = 1\n[config]\nlog_at = 3\n")])
        let (folder, logs, scheduler, events) = (host.folder, host.logs, host.scheduler, host.events)
        // The count has moved before the first reload.
        try await logs.waitFor { $0.service == "Counter" && $0.message == "count 3" }
        let versions = [try await BuiltFixtures.shared.bytes("counter_state.c", defines: Self.version2),
                        try await BuiltFixtures.shared.bytes("counter_state.c")]
        for reload in 0..<100 {
            try folder.overwriteInPlace("Counter.so", with: versions[reload % 2])
            try await scheduler.restart("Counter")
            // Reported once the new version's create returned and it was adopted.
            try await events.next("Counter") { $0.isReloaded }
        }
        #expect(scheduler.snapshot(of: "Counter")?.metadata.reloadsByResult[.ok] == 100)

        try folder.overwriteInPlace("Counter.so", with: try await BuiltFixtures.shared.bytes(
            "counter_state.c", defines: ["COUNTER_CREATE_FAILS", "COUNTER_VERSION=\"3.0.0\""]))
        try await scheduler.restart("Counter")
        let rejected = try await events.next("Counter") { $0.isReloadRejected }
        #expect(rejected.kind == .reloadRejected(reason: "svc_create of the new version 3.0.0 returned -7"))
        try await events.next("Counter") { $0.isStarted }
        try await scheduler.stop("Counter")

        let steps = Self.counts(logs)
        #expect(steps.count == 2 * 102, "\(steps.count) create and stop lines")
        for (index, step) in steps.enumerated() where step.step == "create" && index > 0 {
            #expect(steps[index - 1].step == "stop" && steps[index - 1].count == step.count,
                    "run \(index / 2) began with \(step.count) after \(steps[index - 1])")
        }
        #expect(steps.last!.count >= 3, "the count was lost: \(steps.last!)")
        await scheduler.shutdown()
    }

    /// The kept bytes are bounded by SVC_STATE_MAX_SIZE: one byte more is
    /// refused with -E2BIG, exactly as many are kept.
    @Test(arguments: [Isolation.thread, .process])
    func aSaveLargerThanTheLimitIsRefusedAndTheLimitItselfIsKept(isolation: Isolation) async throws {
        #expect(KeptState.maxSize == 16 * 1024 * 1024)
        let host = try await TestHost(isolation: isolation, plugins: [(file: "Counter.so", fixture: "counter_state.c",
                                                                      sidecar: "interval_ms = 1000\n[config]\noversize = true\n")])
        let line = try await host.logs.waitFor { $0.service == "Counter" && $0.message.hasPrefix("oversize save") }
        #expect(line.message == "oversize save returned \(-E2BIG), max save returned 0")
        await host.scheduler.shutdown()
    }

    /// In process isolation each save reaches the host before state_save
    /// returns: a worker that dies right after saving loses nothing.
    @Test func aCountSavedJustBeforeAWorkerCrashSurvivesTheCrash() async throws {
        let host = try await TestHost(isolation: .process, plugins: [(file: "Counter.so", fixture: "counter_state.c",
                                                                      sidecar: "interval_ms = 1\n[config]\ncrash_at = 5\n")])
        let restarted = try await host.logs.waitFor(count: 2) { $0.service == "Counter" && $0.message.hasPrefix("create ") }
        #expect(restarted.message.hasPrefix("create version=1.0.0 count=5 "), "\(restarted.message)")
        let crash = try #require(host.logs.entries { $0.service == "Counter" && $0.message.contains("SIGSEGV") }.first)
        #expect(crash.level == .error)
        await host.scheduler.shutdown()
    }

    /// A removed service's state goes with it: added again, it starts from nothing.
    @Test(arguments: [Isolation.thread, .process])
    func aRemovedServiceForgetsItsState(isolation: Isolation) async throws {
        let host = try await TestHost(isolation: isolation, plugins: [(file: "Counter.so", fixture: "counter_state.c",
                                                 sidecar: "interval_ms = 1\n[config]\nlog_at = 3\n")])
        let (logs, scheduler) = (host.logs, host.scheduler)
        try await logs.waitFor { $0.service == "Counter" && $0.message == "count 3" }
        try await scheduler.restart("Counter")
        try await logs.waitFor(count: 2) { $0.service == "Counter" && $0.message.hasPrefix("create ") }
        #expect(Self.counts(logs).last!.count > 0)
        try await scheduler.remove("Counter")
        try await scheduler.addPlugin(file: "\(host.folder.path)/Counter.so")
        try scheduler.start("Counter")
        let created = try await logs.waitFor(count: 3) { $0.service == "Counter" && $0.message.hasPrefix("create ") }
        #expect(created.message == "create version=1.0.0 count=0 kept=0")
        await scheduler.shutdown()
    }

    /// Saves count only during their run: a plugin thread left behind after
    /// svc_stop cannot change what the next run reads; what a run reads
    /// stays as it was when the run began; a failed run's saves are dropped.
    @Test func savesOutsideTheirRunAreRefusedAndARunReadsItsSnapshot() {
        let state = KeptState()
        var bytes: [UInt8] = [1, 2, 3]
        let first = state.beginRun()
        #expect(first.state == nil)
        #expect(state.save(&bytes, count: 3, by: first) == 0)
        #expect(state.save(nil, count: 1, by: first) == -EINVAL)
        #expect(first.state == nil, "a run's own saves do not change what it read")
        state.endRun(first)
        #expect(state.save(&bytes, count: 1, by: first) == -ESTALE)
        let failed = state.beginRun()
        #expect(failed.state.map(Array.init) == [1, 2, 3])
        var other: [UInt8] = [9]
        #expect(state.save(&other, count: 1, by: failed) == 0)
        state.abandonRun(failed)
        let next = state.beginRun()
        #expect(next.state.map(Array.init) == [1, 2, 3], "an abandoned run's saves are dropped")
        #expect(state.save(nil, count: 0, by: next) == 0)
        state.endRun(next)
        #expect(state.keptCount == 0)
    }

    /// An overlapping reload: the new run reads what the old one kept so
    /// far; the old one's saves meanwhile are kept aside, dropped once the new
    /// one takes over (and refused after), kept if the new one fails.
    @Test func anOverlappedRunKeepsAsideUntilItsSuccessorTakesOverOrFails() throws {
        let state = KeptState()
        let old = state.beginRun()
        var bytes: [UInt8] = [1]
        #expect(state.save(&bytes, count: 1, by: old) == 0)
        let descriptor = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(descriptor) }
        #expect(state.keep(descriptor, named: "listener", by: old) == 0)

        // The new version fails: what the old one saved meanwhile is what is kept.
        let failed = try #require(state.beginRun(succeeding: old))
        #expect(failed.state.map(Array.init) == [1])
        #expect(failed.descriptorNames == ["listener"])
        var meanwhile: [UInt8] = [2]
        #expect(state.save(&meanwhile, count: 1, by: old) == 0, "the old run checkpoints while the new one is created")
        #expect(state.keep(descriptor, named: "mine", by: failed) == 0)
        state.abandonRun(failed)
        #expect(state.descriptorNames == ["listener"], "the failed run's keep is dropped")
        let reader = try #require(state.beginRun(succeeding: old), "the old run is the newest again")
        #expect(reader.state.map(Array.init) == [2])

        // This one takes over: the old run's later saves are refused.
        var late: [UInt8] = [3]
        #expect(state.save(&late, count: 1, by: old) == 0)
        state.retire(old)
        #expect(state.save(&late, count: 1, by: old) == -ESTALE)
        #expect(state.keep(descriptor, named: "other", by: old) == -ESTALE)
        state.endRun(reader)
        #expect(state.keptCount == 1)
        let next = state.beginRun()
        #expect(next.state.map(Array.init) == [2], "what the old run saved after its successor began never reaches the successor")

        // A successor can only be begun for the newest run.
        #expect(state.beginRun(succeeding: old) == nil)
        let loaded = next.loadDescriptor(named: "listener")
        #expect(loaded >= 0 && loaded != descriptor)
        if loaded >= 0 { close(loaded) }
        #expect(next.loadDescriptor(named: "absent") == -ENOENT)
    }

    /// Descriptor names and the per-service limit; a forgotten name frees a place.
    @Test func keptDescriptorsAreNamedAndBounded() {
        let state = KeptState()
        let run = state.beginRun()
        let descriptor = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(descriptor) }
        for name in ["", "has space", "slash/no", String(repeating: "a", count: KeptState.maxNameLength + 1), "é"] {
            #expect(state.keep(descriptor, named: name, by: run) == -EINVAL, "\(name)")
        }
        #expect(state.keep(descriptor, named: String(repeating: "a", count: KeptState.maxNameLength), by: run) == 0)
        #expect(state.keep(-5, named: "x", by: run) == -EBADF)
        #expect(state.keep(987_654, named: "x", by: run) == -EBADF)
        for index in 1..<KeptState.maxDescriptors {
            #expect(state.keep(descriptor, named: "n\(index)", by: run) == 0)
        }
        #expect(state.keep(descriptor, named: "one-more", by: run) == -ENOSPC)
        #expect(state.keep(descriptor, named: "n1", by: run) == 0, "replacing a kept name needs no new place")
        #expect(state.keep(-1, named: "n1", by: run) == 0)
        #expect(state.keep(descriptor, named: "one-more", by: run) == 0)
        #expect(state.descriptorNames.count == KeptState.maxDescriptors)
        #expect(KeptState.refusal(of: "x", code: -ENOSPC).contains("the most one may (SVC_FD_MAX_KEPT)"))
    }
}
