import Foundation
import Testing
@testable import ServiceHost

/// A scheduler over a temporary plugins folder, with its log and events
/// captured: what most supervision tests start from.
struct TestHost {
    let folder: PluginFolder
    let logs = LogCapture()
    let scheduler: Scheduler
    let events: EventWaiter

    /// - Parameters:
    ///   - plugins: file names with their sidecar text, built from `fixture`s.
    ///   - isolation: the host's default isolation; process isolation forks
    ///     workers from the built `servicehost` binary.
    init(recovery: Bool = true, isolation: Isolation = .thread, plugins: [(file: String, fixture: String, sidecar: String)],
         start: Bool = true) async throws {
        folder = try PluginFolder()
        for plugin in plugins { try await folder.add(plugin.fixture, as: plugin.file, sidecar: plugin.sidecar) }
        scheduler = try Scheduler(
            configuration: .init(recovery: recovery, isolation: isolation, workerExecutable: try HostProcess.binary.path),
            logger: logs.logger)
        events = EventWaiter(scheduler)
        let errors = try await scheduler.addPlugins(directory: folder.path)
        // Thrown, not a precondition: one test fails, not the whole run.
        guard errors.isEmpty else { throw TestFailure(description: "the test's plugins were refused: \(errors)") }
        if start { scheduler.startAll() }
    }

    /// Probe plugins (Tests/Fixtures/probe.c) with their sidecars.
    init(recovery: Bool = true, isolation: Isolation = .thread, probes: [(String, String)], start: Bool = true) async throws {
        try await self.init(recovery: recovery, isolation: isolation,
                      plugins: probes.map { (file: $0.0, fixture: "probe.c", sidecar: $0.1) }, start: start)
    }
}

/// What a process's children and descriptors look like, for leak checks.
enum ProcessCensus {
    /// The `stat` fields after the command name (state, ppid, ...) of every process.
    private static func processes() -> [(pid: Int32, state: Substring, parent: Int32)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.compactMap { pid in
            guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let parent = Int32(fields[1]) else { return nil }
            return (pid, fields[0], parent)
        }
    }

    /// Children of `parent` that have exited but were not reaped.
    static func zombieChildren(of parent: Int32 = getpid()) -> [Int32] {
        processes().filter { $0.parent == parent && $0.state == "Z" }.map(\.pid)
    }

    /// Children of `parent`, alive or not.
    static func children(of parent: Int32 = getpid()) -> [Int32] {
        processes().filter { $0.parent == parent }.map(\.pid)
    }

    /// The names of `pid`'s threads once they include `expected`, or as they
    /// are at the deadline: a thread names itself when it runs, which nothing
    /// announces, so this looks until then.
    static func threadNames(of pid: Int32, including expected: Set<String>, within timeout: Duration = .seconds(20)) async throws -> Set<String> {
        let deadline = ContinuousClock.now + timeout
        while true {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            let names = Set(tasks.compactMap { read("/proc/\(pid)/task/\($0)/comm")?.trimmingCharacters(in: .newlines) })
            if names.isSuperset(of: expected) || ContinuousClock.now >= deadline { return names }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// /proc files report size 0, so they are read as a stream rather than by size.
    static func read(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return (try? handle.readToEnd() ?? Data()).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Each open descriptor of `pid` and what it refers to, for a failure message.
    static func describeDescriptors(of pid: Int32) -> String {
        let listed = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return listed.compactMap(Int.init).sorted().map { descriptor in
            "\(descriptor)=\((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(descriptor)")) ?? "?")"
        }.joined(separator: " ")
    }

    static func openDescriptors(of pid: Int32) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
    }

    /// Resident memory of `pid` in bytes, from /proc/PID/statm.
    static func residentBytes(of pid: Int32) -> Int {
        guard let statm = read("/proc/\(pid)/statm") else { return 0 }
        let fields = statm.split(separator: " ")
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

extension TestHost {
    /// The worker process that has this host's staged plugin copies mapped (the spare has none).
    func workerRunningAPlugin() throws -> Int32 {
        let server = try #require(scheduler.forkServerPID)
        let running = ProcessCensus.children(of: server).filter {
            (ProcessCensus.read("/proc/\($0)/maps") ?? "").contains(scheduler.runtimeDirectory)
        }
        return try #require(running.first)
    }
}
