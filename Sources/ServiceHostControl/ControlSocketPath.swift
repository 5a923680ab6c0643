import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the control socket lives, and making its path ready to bind.
public enum ControlSocketPath {
    /// `$XDG_RUNTIME_DIR/servicehost.sock`, else `/tmp/servicehost-control-<uid>/control.sock`:
    /// in a directory of the user's own (mode 0700), never a name in /tmp
    /// itself that another user could take first.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return "\(runtime)/servicehost.sock"
        }
        return "\(privateDirectory)/control.sock"
    }

    /// The default, as help texts say it.
    public static let defaultDescription = "Default: $XDG_RUNTIME_DIR/servicehost.sock, else /tmp/servicehost-control-<uid>/control.sock"

    /// The directory of the default path when there is no `$XDG_RUNTIME_DIR`.
    static var privateDirectory: String { "/tmp/servicehost-control-\(getuid())" }

    /// The longest path a Unix socket address holds.
    static let maxLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    public struct Refusal: Error, CustomStringConvertible {
        public let description: String
    }

    /// Makes `path` free to bind: nothing there, or a stale socket (no
    /// process answers it), which is removed. A live socket (another host
    /// answers) and anything that is not a socket are refused.
    static func prepare(_ path: String) throws(Refusal) {
        guard path.utf8.count <= maxLength else {
            throw Refusal(description: "control socket path \(path) is \(path.utf8.count) bytes; a Unix socket path holds at most \(maxLength)")
        }
        if path.hasPrefix(privateDirectory + "/") { try preparePrivateDirectory() }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw Refusal(description: "control socket path \(path) cannot be examined: \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw Refusal(description: "control socket path \(path) exists and is not a socket; it is left alone (choose another path with --control-socket)")
        }
        guard info.st_uid == getuid() else {
            throw Refusal(description: "control socket \(path) belongs to uid \(info.st_uid), not to this user; it is left alone (choose another path with --control-socket)")
        }
        if answers(path) {
            throw Refusal(description: "control socket \(path) is in use: another servicehost answers there (stop it, or choose another path with --control-socket)")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Refusal(description: "stale control socket \(path) cannot be removed: \(String(cString: strerror(errno)))")
        }
    }

    /// Makes the private directory of the default path, or checks the one
    /// there: this user's, a directory (not a link), writable by no one else.
    private static func preparePrivateDirectory() throws(Refusal) {
        let directory = privateDirectory
        if mkdir(directory, 0o700) != 0, errno != EEXIST {
            throw Refusal(description: "\(directory) cannot be made for the control socket: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, info.st_uid == getuid(),
              info.st_mode & 0o022 == 0 else {
            throw Refusal(description: "\(directory) is not a directory of this user's that only it may write; "
                + "it is left alone (choose another path with --control-socket)")
        }
    }

    /// Whether a process accepts connections on the socket at `path`. Never
    /// blocks: a listener whose backlog is full counts as one that answers.
    static func answers(_ path: String) -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.prefix(maxLength).enumerated() { bytes[index] = byte }
        }
        // A listening socket accepts at once (the backlog); a stale one refuses at once.
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return connected == 0 || errno == EAGAIN || errno == EINPROGRESS
    }
}
