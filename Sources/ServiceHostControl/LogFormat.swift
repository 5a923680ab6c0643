import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// How the host writes its log lines to standard error (`--log-format`).
public enum LogFormat: String, Sendable, CaseIterable {
    /// For people: swift-log's own line, with the time.
    case text
    /// For machines: one JSON object per line (``LogLineHandler``).
    case json
    /// For journald: each line prefixed with its syslog priority (`<3>`), so
    /// the journal keeps levels; no time (the journal stamps lines itself).
    case journal

    /// `journal` when standard error is the stream systemd connected to the
    /// journal (`$JOURNAL_STREAM` names its device and inode), else `text`.
    public static func `default`(environment: [String: String] = ProcessInfo.processInfo.environment) -> LogFormat {
        guard let stream = environment["JOURNAL_STREAM"] else { return .text }
        let parts = stream.split(separator: ":")
        var info = stat()
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]),
              fstat(STDERR_FILENO, &info) == 0 else { return .text }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode ? .journal : .text
    }
}
