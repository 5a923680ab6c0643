import Foundation
import Testing
@testable import ServiceHost

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

    init(in directory: TemporaryDirectory) throws {
        path = directory.file("notify.sock").path
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.descriptor = descriptor
        let path = self.path
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.enumerated() { bytes[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
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

    /// The pids of a process's children, from every one of its threads.
    private static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
                .split(separator: " ").compactMap { Int32($0) }
        }
    }
}
