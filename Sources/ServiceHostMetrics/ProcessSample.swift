import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The host process's own resource use, read from `/proc/self` at scrape
/// time, for the standard `process_*` metrics every Prometheus client
/// library exports (so that existing dashboards work unchanged).
struct ProcessSample: Sendable, Equatable {
    /// User and system CPU time, in seconds.
    var cpuSeconds: Double
    var residentBytes: Double
    var virtualBytes: Double
    var openDescriptors: Double
    /// The soft limit on descriptors (`RLIMIT_NOFILE`).
    var maxDescriptors: Double

    /// `nil` where `/proc` cannot be read (not Linux, or hidden).
    static func current() -> ProcessSample? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let sample = parse(stat: stat, ticksPerSecond: Double(sysconf(Int32(_SC_CLK_TCK))),
                                 pageSize: Double(sysconf(Int32(_SC_PAGESIZE)))) else { return nil }
        var result = sample
        result.openDescriptors = Double(countOpenDescriptors())
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            result.maxDescriptors = Double(limit.rlim_cur)
        }
        return result
    }

    /// The CPU times and sizes in a `/proc/PID/stat` line. The command name
    /// (field 2, in parentheses) may hold spaces and parentheses of its own,
    /// so fields are counted from the last `)`.
    static func parse(stat: String, ticksPerSecond: Double, pageSize: Double) -> ProcessSample? {
        guard let close = stat.lastIndex(of: ")"), ticksPerSecond > 0 else { return nil }
        // Fields from 3 (state) on.
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // utime is field 14, stime 15, vsize 23, rss 24: indices 11, 12, 20, 21 from field 3.
        guard fields.count > 21, let user = Double(fields[11]), let system = Double(fields[12]),
              let virtual = Double(fields[20]), let resident = Double(fields[21]) else { return nil }
        return ProcessSample(cpuSeconds: (user + system) / ticksPerSecond, residentBytes: resident * pageSize,
                             virtualBytes: virtual, openDescriptors: 0, maxDescriptors: 0)
    }

    /// The entries of `/proc/self/fd`, less the one the count itself opens.
    private static func countOpenDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == UInt8(ascii: ".") && (name[1] == 0 || (name[1] == UInt8(ascii: ".") && name[2] == 0))
            }
            if !isDot { count += 1 }
        }
        return max(count - 1, 0)
    }
}
