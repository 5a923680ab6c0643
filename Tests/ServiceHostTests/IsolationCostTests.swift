import Foundation
import Testing

@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// What a process-isolated service costs the host, in descriptors: its
/// worker's socket and nothing else (the fork server watches the worker's
/// death); and the wake-up that replaced a descriptor per worker.
@Suite("Isolation cost")
struct IsolationCostTests {
    /// The descriptors `pid` has open.
    private static func openDescriptors(of pid: Int32) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
    }

    /// A host running `count` idle services in `isolation`, every one started.
    private static func runningHost(count: Int, isolation: String) async throws -> HostProcess {
        let folder = try PluginFolder()
        for index in 0..<count {
            try await folder.add(as: "Idle\(index).so", sidecar: "interval_ms = 1000\n")
        }
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", isolation])
        try await host.waitForOutput("initial start complete: \(count) running, 0 failed")
        return host
    }

    /// Two hosts, 8 and 24 process-isolated services: 16 descriptors apart.
    @Test func aProcessIsolatedServiceHoldsOneDescriptorInTheHost() async throws {
        var open: [Int] = []
        for count in [8, 24] {
            let host = try await Self.runningHost(count: count, isolation: "process")
            open.append(Self.openDescriptors(of: host.pid))
            host.send(SIGTERM)
            #expect(try await host.waitForExit() == 0)
        }
        #expect(open[1] - open[0] == 16, "\(open[0]) descriptors open with 8 workers, \(open[1]) with 24")
    }

    /// Without a watchdog a worker needs no heartbeat: two threads (the
    /// plugin's and the one that reads the host's orders), and its loop count
    /// still reaches the host (here in its stop report).
    @Test func aWorkerWithoutAWatchdogRunsTwoThreads() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "interval_ms = 10\n[config]\nlog_loops = true\n")])
        try await host.logs.waitFor { $0.service == "P" && $0.message == "loop 2" }
        let worker = try host.workerRunningAPlugin()
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(worker)/task")) ?? []
        #expect(threads.count == 2, "\(threads)")
        try await host.scheduler.stop("P")
        let loops = try #require(host.scheduler.samples().first { $0.name == "P" }).loops
        #expect(loops >= 2)
        await host.scheduler.shutdown()
    }

    /// A stop ordered while the service's thread waits for its worker reaches
    /// that wait at once, however late or early it comes: before the wait
    /// (kept for it), during it (the signal interrupts `ppoll`), and again after a clear.
    @Test(.timed) func aWakeupEndsAWaitWhetherItComesBeforeOrDuringIt() async throws {
        Wakeup.installHandler()
        let (waiting, other) = try WorkerChannel.pair()
        let wakeup = Wakeup()
        wakeup.signal()
        #expect(waiting.receive(until: .now + .seconds(30), wake: wakeup) == .woken)
        // Not cleared: the next wait ends at once as well.
        #expect(waiting.receive(until: .now + .seconds(30), wake: wakeup) == .woken)
        wakeup.clear()
        #expect(waiting.receive(until: .now + .milliseconds(20), wake: wakeup) == .timedOut)

        let began = ContinuousClock.now
        let limit = Duration.seconds(30)
        async let received = Blocking.run { waiting.receive(until: .now + limit, wake: wakeup) }
        // Once the wait has begun (its thread registered), one signal must end it.
        while !wakeup.hasWaiter, ContinuousClock.now - began < limit { await Task.yield() }
        // Timed from the signal: how soon the wait's thread got to run at all
        // is the machine's business (seen taking 17 s under load).
        let signalled = ContinuousClock.now
        wakeup.signal()
        let result = try await received
        #expect(result == .woken)
        #expect(ContinuousClock.now - signalled < limit / 2)
        // A message still comes through a wait with a wake-up.
        wakeup.clear()
        other.send(.loading)
        #expect(waiting.receive(until: .now + limit, wake: wakeup) == .message(.loading))
    }
}
