import Foundation
import Synchronization
import Testing

@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// Service threads' stacks come from shared slabs with a guard region below
/// each (MADV_GUARD_INSTALL), instead of two mappings per thread: what lets
/// 10,000 thread-isolated services fit under the default vm.max_map_count.
@Suite("Thread stacks")
struct ThreadStackTests {
    /// Guard regions that do not split a mapping came with Linux 6.13; before,
    /// threads get glibc's stacks (two mappings each) and these counts do not hold.
    static let kernelHasGuardRegions: Bool = {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2 else { return false }
        return (numbers[0], numbers[1]) >= (6, 13)
    }()

    /// Whether the kernel can read the byte at `address`: write(2) from it
    /// fails with EFAULT where a plain load would crash the process.
    private static func readable(_ address: UnsafeRawPointer) -> Bool {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { return false }
        defer { close(ends[0]); close(ends[1]) }
        return write(ends[1], address, 1) == 1
    }

    /// An overflow off the bottom of a service thread's stack faults instead
    /// of writing into a neighbour's: the 64 KiB below the stack are a guard.
    @Test(.enabled(if: kernelHasGuardRegions)) func theRegionBelowAHostThreadsStackFaults() throws {
        let probed = Completion()
        let results = Mutex<[String: Bool]>([:])
        try HostThread.spawn(name: "test:stack") {
            guard let (low, size) = HostThread.currentStack else { return probed.complete() }
            results.withLock {
                $0["lowest byte"] = Self.readable(low)
                $0["highest byte"] = Self.readable(low + size - 1)
                $0["byte below"] = Self.readable(low - 1)
                $0["64 KiB below"] = Self.readable(low - 64 * 1024)
            }
            probed.complete()
        }
        #expect(probed.waitBlocking(timeout: .seconds(60)))
        #expect(results.withLock { $0 } == ["lowest byte": true, "highest byte": true, "byte below": false, "64 KiB below": false])
    }

    /// Two hosts, 8 and 72 thread-isolated services: besides the plugins'
    /// own copies, 64 more services add far less than a mapping each (glibc's
    /// stacks took two).
    @Test(.enabled(if: kernelHasGuardRegions), .loadsTheMachine) func threadServicesAddNoMappingsBeyondTheirPlugins() async throws {
        var counts: [(all: Int, copies: Int)] = []
        for count in [8, 72] {
            let folder = try PluginFolder()
            for index in 0..<count {
                try await folder.add(as: "Idle\(index).so", sidecar: "interval_ms = 1000\n")
            }
            let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", "thread"])
            try await host.waitForOutput("initial start complete: \(count) running, 0 failed")
            let maps = (ProcessCensus.read("/proc/\(host.pid)/maps") ?? "").split(separator: "\n")
            counts.append((maps.count, maps.filter { $0.contains("/servicehost-") && $0.contains(".so") }.count))
            host.send(SIGTERM)
            #expect(try await host.waitForExit() == 0)
        }
        let beyondCopies = (counts[1].all - counts[1].copies) - (counts[0].all - counts[0].copies)
        #expect(counts[1].copies > counts[0].copies, "the plugins' copies were not recognized: \(counts)")
        #expect(beyondCopies < 16 && beyondCopies > -16, "64 more services took \(beyondCopies) mappings besides their plugins' copies: \(counts)")
    }

    /// A stack is used again once its thread has ended: 320 restarts of
    /// thread services (a new thread each) leave the stacks' address space as
    /// it was, give or take one slab of 64, where fresh stacks would take five such.
    @Test(.enabled(if: kernelHasGuardRegions), .loadsTheMachine) func theStackOfAnEndedThreadIsUsedAgain() async throws {
        let folder = try PluginFolder()
        let names = (0..<8).map { "Idle\($0)" }
        for name in names {
            try await folder.add(as: "\(name).so", sidecar: "interval_ms = 1000\n")
        }
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", "thread"])
        try await host.waitForOutput("initial start complete: 8 running, 0 failed")
        /// Bytes of address space reserved for thread stacks: anonymous
        /// read-write mappings the kernel marks `nh` (no huge pages), as it
        /// does every MAP_STACK mapping, the host's slabs and glibc's stacks alike.
        func slabBytes() -> Int {
            var total = 0
            var size = 0
            var anonymousReadWrite = false
            for line in (ProcessCensus.read("/proc/\(host.pid)/smaps") ?? "").split(separator: "\n") {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                    let bounds = range.split(separator: "-").compactMap { Int($0, radix: 16) }
                    size = bounds.count == 2 ? bounds[1] - bounds[0] : 0
                    anonymousReadWrite = fields.count == 5 && fields[1] == "rw-p"
                } else if fields.first == "VmFlags:", anonymousReadWrite, fields.contains("nh") {
                    total += size
                }
            }
            return total
        }
        let before = slabBytes()
        var stack = rlimit()
        getrlimit(Int32(RLIMIT_STACK.rawValue), &stack)
        let stackSize = max(256 << 10, stack.rlim_cur == rlim_t.max ? 8 << 20 : Int(stack.rlim_cur))
        let slab = 64 * (stackSize + (64 << 10))
        for _ in 0..<40 {
            let restart = try await HostProcess.run(["ctl", "--socket", host.controlSocket, "restart"] + names)
            #expect(restart.status == 0, "\(restart.output)")
        }
        let after = slabBytes()
        #expect(before > 0, "no stack found")
        #expect(after - before <= slab, "stacks grew from \(before >> 20) MiB to \(after >> 20) MiB over 320 restarts")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }
}

/// libffi's closures for `svc_host` need executable memory, which an
/// exhausted address space (`vm.max_map_count`, `RLIMIT_AS`) refuses: the one
/// service that hits it fails with that reason, and the host runs on (it used
/// to stop with a fatal error).
@Suite("Callback memory")
struct CallbackMemoryTests {
    @Test func aThreadServiceWhoseCallbacksCannotBeMadeIsRefusedAlone() async throws {
        let host = try await TestHost(probes: [("Fine.so", "interval_ms = 1000\n")], start: false)
        let file = try await host.folder.add(as: "Starved.so", sidecar: "interval_ms = 1000\n")
        // Added synchronously: the task-local fault reaches only the calling thread.
        let error = HostBinding.$closuresFail.withValue(true) {
            #expect(throws: PluginError.self) { try host.scheduler.addPlugin(file: file) }
        }
        #expect(error?.code == .loadFailed)
        #expect(error?.file == file)
        #expect(error?.reason.hasPrefix("cannot make its svc_host callbacks: libffi could not map executable memory") == true,
                "\(error?.reason ?? "")")
        // The next one, with memory, is added and runs beside the first.
        try await host.scheduler.addPlugin(file: file)
        host.scheduler.startAll()
        try await host.events.first("Starved") { $0.isStarted }
        try await host.events.first("Fine") { $0.isStarted }
        await host.scheduler.shutdown()
    }
}
