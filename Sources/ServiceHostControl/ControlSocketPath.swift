import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where the control socket lives, and making its path ready to bind.
public enum ControlSocketPath {
    /// `$XDG_RUNTIME_DIR/servicehost.sock`, else `/tmp/servicehost-<uid>.sock`.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return "\(runtime)/servicehost.sock"
        }
        return "/tmp/servicehost-\(getuid()).sock"
    }

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
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw Refusal(description: "control socket path \(path) cannot be examined: \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw Refusal(description: "control socket path \(path) exists and is not a socket; it is left alone (choose another path with --control-socket)")
        }
        if answers(path) {
            throw Refusal(description: "control socket \(path) is in use: another servicehost answers there (stop it, or choose another path with --control-socket)")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Refusal(description: "stale control socket \(path) cannot be removed: \(String(cString: strerror(errno)))")
        }
    }

    /// Whether a process accepts connections on the socket at `path`.
    static func answers(_ path: String) -> Bool {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.prefix(maxLength).enumerated() { bytes[index] = byte }
        }
        // A listening socket accepts at once (the backlog); a stale one refuses at once.
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }
}
