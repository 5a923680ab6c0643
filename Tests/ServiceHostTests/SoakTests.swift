import Foundation
import Testing
@testable import ServiceHost

/// Hundreds of worker crashes in a row must leave the host as it was:
/// no memory growth to speak of, no descriptors or zombies left behind.
@Suite("Soak", .serialized)
struct SoakTests {
    @Test func fiveHundredConsecutiveWorkerCrashes() async throws {
        let crashes = 500
        func crashing(_ file: String, times: Int) -> (file: String, fixture: String, sidecar: String) {
            (file: file, fixture: "faulty.c", sidecar: """
                backoff_initial_ms = 0
                restart_limit = 0
                retries = \(times - 1)
                [config]
                fault = "segv"
                fault_after = 1
                """)
        }
        let host = try TestHost(isolation: .process, plugins: [crashing("Warm.so", times: 20), crashing("Crashy.so", times: crashes)],
                                start: false)
        // A first, shorter series warms up what the host and the runtime keep
        // (allocator arenas, the fork server, Dispatch's timers behind the
        // test's own deadlines), so that what follows measures growth per crash.
        // Both measures are taken while no worker runs.
        try host.scheduler.start("Warm")
        try await host.events.next("Warm", { $0.isFailed }, timeout: .seconds(60))
        let residentBefore = ProcessCensus.residentBytes()
        let descriptorsBefore = ProcessCensus.openDescriptors()

        try host.scheduler.start("Crashy")
        let failed = try await host.events.next("Crashy", { $0.isFailed }, timeout: .seconds(300))
        guard case .failed(let why) = failed.kind else { return }
        #expect(why.contains("gave up after \(crashes - 1) restarts"))
        let snapshot = try #require(host.scheduler.snapshot(of: "Crashy"))
        #expect(snapshot.metadata.errorCount == crashes)
        #expect(snapshot.metadata.errors.count == ServiceMetadata.errorHistoryLimit)
        #expect(snapshot.metadata.errors.allSatisfy { $0.message.contains("worker killed by SIGSEGV in svc_loop") })

        let residentAfter = ProcessCensus.residentBytes()
        let grew = residentAfter - residentBefore
        print("soak: \(crashes) crashes, resident \(residentBefore / 1024) KiB -> \(residentAfter / 1024) KiB (\(grew / 1024) KiB), descriptors \(descriptorsBefore) -> \(ProcessCensus.openDescriptors())")
        #expect(grew < 10 * 1024 * 1024, "resident memory grew by \(grew) bytes")
        #expect(ProcessCensus.openDescriptors() == descriptorsBefore, "\(ProcessCensus.describeDescriptors())")
        #expect(ProcessCensus.zombieChildren().isEmpty)
        // Only the fork server is left as a child; every worker was reaped.
        let children = ProcessCensus.children()
        #expect(children.count <= 1, "\(children)")
        await host.scheduler.shutdown()
        #expect(ProcessCensus.zombieChildren().isEmpty)
    }
}
