import Foundation
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// What a watcher reported, its first report held until released.
private final class OverflowReports: @unchecked Sendable {
    let first = Completion()
    let second = Completion()
    let release = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var reports: [String] = []

    var all: [String] { lock.withLock { reports } }

    func record(_ what: String) {
        let count: Int = lock.withLock {
            reports.append(what)
            return reports.count
        }
        if count == 1 {
            first.complete()
            release.wait()
        } else {
            second.complete()
        }
    }
}

/// `servicehost run --watch`: the plugins directory is live. Driven through
/// the real binary with the file operations users make.
@Suite("Watched plugins directory", .serialized)
struct WatchTests {
    @Test func onlyPluginsAndSidecarsCountNotTemporaryOrHiddenFiles() {
        for name in ["libEcho.so", "Echo.so", "Echo.toml"] {
            #expect(DirectoryWatcher.isRelevant(name), "\(name)")
        }
        for name in [".Echo.so", "Echo.so.tmp", "Echo.so.part", "Echo.toml~", ".#Echo.toml", "Echo.toml.swp", "notes.txt", "Echo.so.1"] {
            #expect(!DirectoryWatcher.isRelevant(name), "\(name)")
        }
    }

    @Test func addingReplacingEditingAndRemovingFilesTakeEffectWithoutASignal() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "First.so", sidecar: "interval_ms = 50\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--watch"])
        try await host.waitForOutput("watching \(folder.path) for changes")
        try await host.waitForOutput("service=First [ServiceHost] started")

        // Written under a temporary name (ignored), then moved into place: added.
        let staging = folder.directory.file(".New.so.tmp").path
        try FileManager.default.copyItem(at: try await BuiltFixtures.shared.c("probe.c"), to: URL(fileURLWithPath: staging))
        try folder.sidecar(for: "New.so", "interval_ms = 50\n")
        #expect(rename(staging, folder.directory.file("New.so").path) == 0)
        try await host.waitForOutput("service=New [ServiceHost] started")
        #expect(host.outputText.split(separator: "\n").contains { $0.contains("plugins directory changed (") && $0.contains("New.so") },
                "\(host.outputText)")

        // Replaced in place with `cp`: hot-reloaded to the new version.
        try folder.overwriteInPlace("First.so", with: try await BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        try await host.waitForOutput("reloaded \(folder.path)/First.so: 1.0.0 -> 2.0.0")

        // Installed with install(1): started.
        let source = try await BuiltFixtures.shared.c("probe.c").path
        try folder.sidecar(for: "Installed.so", "interval_ms = 50\n")
        let install = try await HostProcess.run(["-m", "0755", source, folder.directory.file("Installed.so").path],
                                                executable: URL(fileURLWithPath: "/usr/bin/install"))
        #expect(install.status == 0, "\(install.output)")
        try await host.waitForOutput("service=Installed [ServiceHost] started")

        // A sidecar edited: restarted with the new values.
        try folder.sidecar(for: "First.so", "interval_ms = 50\n[config]\ngreeting = \"edited\"\n")
        try await host.waitForOutput("name=First version=2.0.0 greeting=edited")

        // Removed: stopped and removed.
        try FileManager.default.removeItem(atPath: folder.directory.file("New.so").path)
        try await host.waitForOutput("service=New [ServiceHost] its plugin file is gone; stopping and removing the service")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
        #expect(!host.outputText.contains(".New.so.tmp"), "a temporary name is never acted on")
    }

    /// The directory moved away and back: the watch follows, says so, and
    /// the reload after it finds the plugins as they are.
    @Test func aDirectoryMovedAwayAndBackIsWatchedAgain() async throws {
        let parent = try TemporaryDirectory("watch-parent")
        chmod(parent.path, 0o755)
        let plugins = parent.file("plugins").path
        try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: false)
        chmod(plugins, 0o755)
        try FileManager.default.copyItem(at: try await BuiltFixtures.shared.c("probe.c"), to: URL(fileURLWithPath: "\(plugins)/First.so"))
        try "interval_ms = 50\n".write(toFile: "\(plugins)/First.toml", atomically: true, encoding: .utf8)
        let host = try HostProcess(["run", "--plugins", plugins, "--watch"])
        try await host.waitForOutput("service=First [ServiceHost] started")
        #expect(rename(plugins, parent.file("elsewhere").path) == 0)
        try await host.waitForOutput("\(plugins) was removed or moved; --watch looks for it again")
        #expect(rename(parent.file("elsewhere").path, plugins) == 0)
        try await host.waitForOutput("\(plugins) is back; watching it again")
        try await host.waitForOutput("plugins directory changed (the plugins directory came back)")
        // Watched again: a new plugin is picked up.
        try "interval_ms = 50\n".write(toFile: "\(plugins)/Second.toml", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: try await BuiltFixtures.shared.c("probe.c"), to: URL(fileURLWithPath: "\(plugins)/Second.so"))
        try await host.waitForOutput("service=Second [ServiceHost] started")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    /// More changes at once than the kernel queues (its event queue
    /// overflows): the watcher rescans everything rather than missing one.
    /// The watcher's own thread is held in its first report meanwhile, so
    /// that it cannot drain the queue as it fills.
    @Test func anOverflowingEventQueueMakesARescan() async throws {
        let folder = try PluginFolder()
        let reports = OverflowReports()
        let watcher = try DirectoryWatcher(directory: folder.path, logger: LogCapture().logger) { what in reports.record(what) }
        defer { watcher.stop() }
        try "interval_ms = 50\n".write(toFile: folder.directory.file("First.toml").path, atomically: false, encoding: .utf8)
        #expect(await reports.first.wait(timeout: .seconds(20)))
        let limit = (try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 16384
        // Each file makes two events (created, closed): a few more than the queue holds; names that never count by themselves.
        let directory = folder.path
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                for index in 0...(limit / 2 + 64) {
                    let descriptor = open("\(directory)/junk-\(index).txt", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                    if descriptor >= 0 { close(descriptor) }
                }
                done.resume()
            }
        }
        reports.release.signal()
        #expect(await reports.second.wait(timeout: .seconds(20)))
        #expect(reports.all == ["First.toml", "too many changes at once (the event queue overflowed)"])
    }

    /// A plugin written in two sessions (closed half-way, a pause longer than
    /// the quiet period) is looked at half-written: the scanner refuses that
    /// version and the service keeps running the old one; the finished file
    /// is then loaded.
    @Test func aFileStillBeingWrittenNeverReplacesTheRunningVersion() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Slow.so", sidecar: "interval_ms = 50\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--watch"])
        try await host.waitForOutput("service=Slow [ServiceHost] started")
        let version2 = try await BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""])
        // A writer that closes the file half-way (a copy that resumes later).
        try folder.overwriteInPlace("Slow.so", with: Array(version2.prefix(version2.count / 2)))
        // The half file settles and is reloaded: refused, the old version runs on.
        try await host.waitForOutput("reload of \(folder.path)/Slow.so failed: ")
        try await host.waitForOutput("keeping version 1.0.0")
        let handle = try FileHandle(forWritingTo: folder.directory.file("Slow.so"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(version2.dropFirst(version2.count / 2)))
        try handle.close()
        try await host.waitForOutput("reloaded \(folder.path)/Slow.so: 1.0.0 -> 2.0.0")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
        #expect(!host.outputText.contains("service=Slow [ServiceHost] failed"), "\(host.outputText)")
    }
}
