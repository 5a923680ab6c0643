import Foundation
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// Hundreds of worker crashes in a row must leave the host as it was: no
/// memory growth to speak of, no descriptors or zombies left behind.
///
/// Measured on a `servicehost run` process of its own, so that nothing else
/// the test runner does at the same time counts.
@Suite("Soak")
struct SoakTests {
    @Test(.loadsTheMachine) func fiveHundredConsecutiveWorkerCrashes() async throws {
        let crashes = 500
        let folder = try PluginFolder()
        func crashing(_ file: String, times: Int) async throws {
            try await folder.add("faulty.c", as: file, sidecar: """
                isolation = "process"
                backoff_initial_ms = 0
                restart_limit = 0
                retries = \(times - 1)
                healthy_after_ms = 0
                [config]
                fault = "segv"
                fault_after = 1
                """)
        }
        // One service that gives up after 500 crashes; SIGHUP gives it one
        // more start, and as every run counts as healthy (healthy_after_ms = 0)
        // that start earns it another 500. The first series and the first SIGHUP warm up what the host
        // keeps (allocator arenas, the fork server, the signal machinery);
        // the third series is measured, from a baseline taken while no worker runs.
        try await crashing("Crashy.so", times: crashes)
        let host = try HostProcess(["run", "--plugins", folder.path])
        let gaveUp = "service=Crashy [ServiceHost] failed: gave up after \(crashes - 1) restarts"
        try await host.waitForOutput(gaveUp, timeout: .seconds(300))
        host.send(SIGHUP)
        try await host.waitForOutput(gaveUp, count: 2, timeout: .seconds(300))
        let residentBefore = ProcessCensus.residentBytes(of: host.pid)
        let descriptorsBefore = ProcessCensus.openDescriptors(of: host.pid)
        let forkServer = try #require(ProcessCensus.children(of: host.pid).first)
        host.send(SIGHUP)
        try await host.waitForOutput(gaveUp, count: 3, timeout: .seconds(300))
        let residentAfter = ProcessCensus.residentBytes(of: host.pid)
        let descriptorsAfter = ProcessCensus.openDescriptors(of: host.pid)
        let grew = residentAfter - residentBefore
        print("soak: \(crashes) worker crashes; host resident \(residentBefore / 1024) KiB -> \(residentAfter / 1024) KiB (\(grew / 1024) KiB), descriptors \(descriptorsBefore) -> \(descriptorsAfter)")
        #expect(grew < 10 * 1024 * 1024, "resident memory grew by \(grew) bytes")
        #expect(descriptorsAfter == descriptorsBefore, "\(ProcessCensus.describeDescriptors(of: host.pid))")
        // No zombies: every worker was reaped, and only the fork server is a
        // child; its only child is the spare worker it keeps ready.
        #expect(ProcessCensus.zombieChildren(of: host.pid).isEmpty)
        #expect(ProcessCensus.zombieChildren(of: forkServer).isEmpty)
        #expect(ProcessCensus.children(of: forkServer).count == 1)
        #expect(ProcessCensus.children(of: host.pid) == [forkServer])
        let crashLines = host.outputText.components(separatedBy: "service=Crashy [ServiceHost] stopped: failed: \(folder.path)/Crashy.so: worker killed by SIGSEGV in svc_loop").count - 1
        #expect(crashLines == 3 * crashes)

        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }
}
