import Foundation
import Testing
@testable import ServiceHost
import ServiceHostControl

#if canImport(Glibc)
import Glibc
#endif

/// A datagram socket a test binds as `$NOTIFY_SOCKET`, keeping every message
/// the host sends, in order.
private final class NotifySocket: @unchecked Sendable {
    let path: String
    private let descriptor: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var waiters: [(Int, CheckedContinuation<Void, Never>)] = []

    /// A socket at a path in `directory`, or (`abstract`) in the abstract
    /// namespace, whose `$NOTIFY_SOCKET` spelling starts with `@`.
    init(in directory: TemporaryDirectory, abstract: Bool = false) throws {
        path = abstract ? "@servicehost-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" : directory.file("notify.sock").path
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.descriptor = descriptor
        var bytes = Array(path.utf8)
        if abstract { bytes[0] = 0 }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            for (index, byte) in bytes.enumerated() { path[index] = byte }
        }
        // An abstract name is exactly as long as its bytes.
        let length = abstract ? socklen_t(MemoryLayout<sa_family_t>.size + bytes.count) : socklen_t(MemoryLayout<sockaddr_un>.size)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else { throw CocoaError(.fileWriteUnknown) }
        Thread.detachNewThread { [weak self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                if count < 0, errno == EINTR { continue }
                guard count >= 0, let self else { return }
                self.append(String(decoding: buffer[..<count], as: UTF8.self))
            }
        }
    }

    deinit { shutdown(descriptor, Int32(SHUT_RDWR)); close(descriptor) }

    var messages: [String] { lock.withLock { received } }

    private func append(_ message: String) {
        let ready: [CheckedContinuation<Void, Never>] = lock.withLock {
            received.append(message)
            let count = received.count
            let ready = waiters.filter { $0.0 <= count }.map(\.1)
            waiters.removeAll { $0.0 <= count }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    /// Waits until `count` messages have come (a guard against a hung test, not a synchronisation).
    func waitFor(count: Int) async throws {
        try await withDeadline(.seconds(20), waiting: "\(count) notify messages (have \(messages))") {
            await withCheckedContinuation { continuation in
                self.lock.lock()
                if self.received.count >= count {
                    self.lock.unlock()
                    continuation.resume()
                } else {
                    self.waiters.append((count, continuation))
                    self.lock.unlock()
                }
            }
        }
    }

    /// Waits until a message satisfying `matches` has come after the first `after`; returns its index.
    func waitFor(after: Int = 0, _ matches: (String) -> Bool) async throws -> Int {
        var count = after + 1
        while true {
            try await waitFor(count: count)
            let all = messages
            if let index = all.indices.dropFirst(after).first(where: { matches(all[$0]) }) { return index }
            count = all.count + 1
        }
    }
}

/// sd_notify: the host tells a test-owned `$NOTIFY_SOCKET` what systemd
/// would hear, in order: ready, watchdog pings, reload, stopping.
@Suite("systemd notify")
struct SystemdTests {
    @Test func theHostTellsSystemdItIsReadyPingsTheWatchdogReloadsAndStops() async throws {
        let directory = try TemporaryDirectory("notify")
        let notify = try NotifySocket(in: directory)
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 50\n")
        let watchdog = Duration.milliseconds(400)
        let host = try HostProcess(["run", "--plugins", folder.path], environment: [
            "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "\(watchdog.components.seconds * 1_000_000 + watchdog.components.attoseconds / 1_000_000_000_000)",
        ])
        try await notify.waitFor(count: 1)
        let first = notify.messages[0]
        #expect(first.hasPrefix("READY=1\nSTATUS="), "\(first)")
        // Pinged at half the watchdog period: two pings.
        let ping = try await notify.waitFor(after: 1) { $0 == "WATCHDOG=1" }
        _ = try await notify.waitFor(after: ping + 1) { $0 == "WATCHDOG=1" }

        // Nothing of systemd's reaches the programs the host starts (its fork server here).
        let children = Self.children(of: host.pid)
        #expect(!children.isEmpty, "the fork server that scanned the plugin")
        for child in children {
            let environment = (try? String(contentsOfFile: "/proc/\(child)/environ", encoding: .utf8)) ?? ""
            #expect(!environment.contains("NOTIFY_SOCKET="), "child \(child)")
            #expect(!environment.contains("WATCHDOG_USEC="), "child \(child)")
        }

        let before = notify.messages.count
        host.send(SIGHUP)
        let reloading = try await notify.waitFor(after: before) { $0.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") }
        let stamp = try #require(notify.messages[reloading].split(separator: "=").last.flatMap { Int64($0) })
        #expect(stamp > 0)
        _ = try await notify.waitFor(after: reloading + 1) { $0 == "READY=1" }

        let beforeStop = notify.messages.count
        host.send(SIGTERM)
        _ = try await notify.waitFor(after: beforeStop) { $0 == "STOPPING=1" }
        #expect(try await host.waitForExit() == 0)
    }

    @Test func anAbstractNotifySocketIsReachedToo() async throws {
        let directory = try TemporaryDirectory("notify")
        let notify = try NotifySocket(in: directory, abstract: true)
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 50\n")
        let host = try HostProcess(["run", "--plugins", folder.path], environment: ["NOTIFY_SOCKET": notify.path])
        try await notify.waitFor(count: 1)
        // Ready once no service is starting any more.
        #expect(notify.messages[0] == "READY=1\nSTATUS=1 running, 0 failed")
        host.send(SIGTERM)
        _ = try await notify.waitFor(after: 0) { $0 == "STOPPING=1" }
        #expect(try await host.waitForExit() == 0)
        #expect(!notify.messages.contains("WATCHDOG=1"), "no watchdog asked for, none sent")
    }

    /// The supervisor wedged for real: a service's lock held while a start
    /// order, inside the supervisor's lock, waits for it. The host's tick
    /// asks the supervisor first, so the pulse (/livez) and the watchdog
    /// pings stop until the supervisor answers again.
    @Test func aWedgedSupervisorStopsThePulseAndTheWatchdogPings() async throws {
        let directory = try TemporaryDirectory("notify")
        let notify = try NotifySocket(in: directory)
        let host = try await TestHost(probes: [("Held.so", "interval_ms = 50\n")], start: false)
        let scheduler = host.scheduler
        let tick = Duration.milliseconds(20)
        let systemd = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "\(tick.milliseconds * 2_000)"]))
        #expect(systemd.watchdogInterval == tick)
        let pulse = HostPulse(staleAfter: tick * 5)
        let ticker = Ticker(SupervisorTick(systemd: systemd, pulse: pulse, counts: { scheduler.stateCounts() }), every: tick)
        defer { ticker.stop() }
        _ = try await notify.waitFor { $0 == "WATCHDOG=1" }

        let service = try #require(scheduler.service(named: "Held"))
        let held = DispatchSemaphore(value: 0), gate = DispatchSemaphore(value: 0)
        Thread { service.updateMetadata { _ in held.signal(); gate.wait() } }.start()
        held.wait()
        let order = Thread { try? scheduler.start("Held") }
        order.start()
        // The tick now blocks on the supervisor: the pulse goes stale.
        try await withDeadline(tick * 500, waiting: "the pulse to go stale") {
            while pulse.isAlive() { try? await Task.sleep(for: tick) }
        }
        let pingsWhileWedged = notify.messages.filter { $0 == "WATCHDOG=1" }.count
        try await Task.sleep(for: tick * 10)
        #expect(notify.messages.filter { $0 == "WATCHDOG=1" }.count == pingsWhileWedged, "no ping while the supervisor is wedged")
        #expect(!pulse.isAlive())

        gate.signal()
        let before = notify.messages.count
        _ = try await notify.waitFor(after: before) { $0 == "WATCHDOG=1" }
        #expect(pulse.isAlive())
        try await host.events.first("Held", \.isStarted)
        await scheduler.shutdown()
    }

    /// The pids of a process's children, from every one of its threads.
    private static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
                .split(separator: " ").compactMap { Int32($0) }
        }
    }
}

/// The host's main loop's ticks, on a thread of their own (a tick may block).
private final class Ticker: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true

    init(_ tick: SupervisorTick, every interval: Duration) {
        Thread { [self] in
            var tick = tick
            while lock.withLock({ running }) {
                tick.tick()
                usleep(UInt32(interval.milliseconds * 1000))
            }
        }.start()
    }

    func stop() { lock.withLock { running = false } }
}
