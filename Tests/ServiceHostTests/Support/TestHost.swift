import Foundation
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
         start: Bool = true) throws {
        folder = try PluginFolder()
        for plugin in plugins { try folder.add(plugin.fixture, as: plugin.file, sidecar: plugin.sidecar) }
        scheduler = try Scheduler(
            configuration: .init(recovery: recovery, isolation: isolation, workerExecutable: try HostProcess.binary.path),
            logger: logs.logger)
        events = EventWaiter(scheduler)
        let errors = try scheduler.addPlugins(directory: folder.path)
        precondition(errors.isEmpty, "\(errors)")
        if start { scheduler.startAll() }
    }

    /// Probe plugins (Tests/Fixtures/probe.c) with their sidecars.
    init(recovery: Bool = true, isolation: Isolation = .thread, probes: [(String, String)], start: Bool = true) throws {
        try self.init(recovery: recovery, isolation: isolation,
                      plugins: probes.map { (file: $0.0, fixture: "probe.c", sidecar: $0.1) }, start: start)
    }
}

/// What this process's children and descriptors look like, for leak checks.
enum ProcessCensus {
    /// Child processes of this process that have exited but were not reaped.
    static func zombieChildren() -> [Int32] {
        let me = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = read("/proc/\(pid)/stat"),
                  let close = stat.lastIndex(of: ")") else { return false }
            // Fields after the command name: state, ppid, ...
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && fields[0] == "Z" && Int32(fields[1]) == me
        }
    }

    /// Child processes of this process, alive or not.
    static func children() -> [Int32] {
        let me = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let stat = read("/proc/\(pid)/stat"),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == me
        }
    }

    /// /proc files report size 0, so they are read as a stream rather than by size.
    static func read(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return (try? handle.readToEnd()).map { String(decoding: $0 ?? Data(), as: UTF8.self) }
    }

    /// Each open descriptor and what it refers to, for a failure message.
    static func describeDescriptors() -> String {
        let listed = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return listed.compactMap(Int.init).sorted().map { descriptor in
            "\(descriptor)=\((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(descriptor)")) ?? "?")"
        }.joined(separator: " ")
    }

    static func openDescriptors() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count
    }

    /// Resident memory in bytes, from /proc/self/statm.
    static func residentBytes() -> Int {
        guard let statm = read("/proc/self/statm") else { return 0 }
        let fields = statm.split(separator: " ")
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
