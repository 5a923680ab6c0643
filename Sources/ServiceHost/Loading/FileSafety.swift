#if canImport(Glibc)
import Glibc
#endif

/// Refuses files that someone other than the host's user (or root) could have changed.
///
/// Loading a plugin runs its code with the host's rights, and its sidecar
/// decides what that code is given, so, like sshd's `StrictModes`, the host
/// refuses a file that another user could have written:
///
/// - a plugin or sidecar file that is writable by its group or by others, or
///   owned by anyone but the host's effective user or root;
/// - a plugins directory that is writable by its group or by others, or owned
///   by anyone but the host's effective user or root. Whoever can write the
///   directory can replace a plugin (rename another file over it) or add a
///   new one, which the host then loads as a new service; so a group-writable
///   directory is as unsafe as a group-writable plugin. The sticky bit
///   (`1777`, as on `/tmp`) does not help: it stops others deleting or
///   renaming files they do not own, not adding new plugins.
///
/// Symbolic links are judged by what they point to (`stat`, not `lstat`): the
/// link itself cannot be written through, and its target is what gets
/// loaded. When the path is a link, the reason names the link's target.
///
/// Only the path itself is judged: not the directories above it, and not the
/// directory a link's target lives in.
enum FileSafety {
    enum Kind: Sendable { case plugin, sidecar, directory }

    /// Throws PluginError(.insecure, file: path, reason: ...) when `path` is unsafe for `kind`.
    ///
    /// A path that cannot be `stat`ed (missing, a dangling link, no search
    /// permission) is not this check's business: it returns without error,
    /// and the loader reports the problem when it opens the file.
    static func check(_ path: String, as kind: Kind) throws(PluginError) {
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        if let reason = reason(mode: info.st_mode, owner: info.st_uid, hostUser: geteuid(),
                               kind: kind, linkTarget: linkTarget(of: path)) {
            throw PluginError(.insecure, file: path, reason: reason)
        }
    }

    /// What is unsafe about a file with this `mode` and `owner` when the host
    /// runs as `hostUser`, as a sentence without the file name; `nil` when it
    /// is safe. `linkTarget` is where the path leads when it is a symbolic
    /// link, and is named in the sentence.
    ///
    /// Ownership is reported first; otherwise writability by the group and by
    /// others are reported together.
    static func reason(mode: mode_t, owner: uid_t, hostUser: uid_t, kind: Kind, linkTarget: String?) -> String? {
        var subject: [String] = []
        if kind == .directory { subject.append("plugins directory") }
        if let linkTarget { subject.append("(a link to \(linkTarget))") }
        let prefix = subject.isEmpty ? "" : subject.joined(separator: " ") + " "
        let refusal = kind == .directory ? "refusing to load plugins from it" : "refusing to load it"
        let permissions = mode & 0o7777
        let octal = String(permissions, radix: 8)
        let shownMode = String(repeating: "0", count: max(0, 4 - octal.count)) + octal

        func sentence(_ problem: String, fix: String) -> String {
            "\(prefix)\(problem); \(refusal) — fix with \(fix), or run with --allow-insecure-plugins"
        }

        if owner != hostUser && owner != 0 {
            return sentence("is owned by uid \(owner), not by the host's user (uid \(hostUser)) or root",
                            fix: "chown \(hostUser)")
        }

        let groupWritable = permissions & mode_t(S_IWGRP) != 0
        let othersWritable = permissions & mode_t(S_IWOTH) != 0
        let sticky = kind == .directory && permissions & mode_t(S_ISVTX) != 0
        let stickyNote = sticky ? "; the sticky bit does not stop others adding plugins" : ""
        switch (groupWritable, othersWritable) {
        case (true, true):
            return sentence("is writable by its group and by others (mode \(shownMode)\(stickyNote))", fix: "chmod go-w")
        case (false, true):
            return sentence("is writable by others (mode \(shownMode)\(stickyNote))", fix: "chmod o-w")
        case (true, false):
            return sentence("is writable by its group (mode \(shownMode))", fix: "chmod g-w")
        case (false, false):
            return nil
        }
    }

    /// Where `path` finally leads when it is a symbolic link (fully resolved,
    /// as `stat` follows it); `nil` when it is not a link.
    static func linkTarget(of path: String) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & mode_t(S_IFMT) == mode_t(S_IFLNK) else { return nil }
        if let resolved = realpath(path, nil) {
            defer { free(resolved) }
            return String(cString: resolved)
        }
        // realpath failed although stat succeeded (a race): name the link's own text.
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { return "an unreadable target" }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
