import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Who may do what over the control socket, from the peer's credentials
/// (`SO_PEERCRED`, which the kernel fills in; a client cannot forge them).
public enum PeerAccess {
    /// `struct ucred`, field for field (pid_t, uid_t, gid_t): what `SO_PEERCRED`
    /// fills in. Declared here because Swift's Glibc module shows `ucred`
    /// only to code built with `_GNU_SOURCE`.
    struct Credentials: Sendable {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
    }

    /// The host's own user and root may do everything; members of the
    /// control group may read; anyone else is refused (`nil`).
    /// - Parameter groups: the peer's supplementary groups.
    static func access(uid: uid_t, gid: gid_t, groups: [gid_t], hostUser: uid_t, controlGroup: gid_t?) -> ControlAPI.Access? {
        if uid == 0 || uid == hostUser { return .full }
        if let controlGroup, gid == controlGroup || groups.contains(controlGroup) { return .readOnly }
        return nil
    }

    /// The supplementary groups of a live process, from `/proc/PID/status`
    /// (empty when it cannot be read: the process is gone, or hidden).
    static func supplementaryGroups(of pid: pid_t) -> [gid_t] {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return [] }
        return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { gid_t($0) }
    }

    /// The id of a group named by name or number.
    public static func groupID(named name: String) -> gid_t? {
        if let number = gid_t(name) { return number }
        var group = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getgrnam_r(name, &group, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return group.gr_gid
    }
}
