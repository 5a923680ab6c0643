import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A private directory (mode 0700) where the host keeps the copies of plugin
/// files it loads.
///
/// Loading a private copy at a unique path does two things: `dlopen` cannot
/// hand back a cached image of an older version with the same path, and a
/// user who overwrites a plugin file in place does not truncate pages the
/// host has mapped. The directory is removed with everything in it on
/// ``remove()`` (at shutdown) or when the value is released.
public final class RuntimeDirectory: @unchecked Sendable {
    public let path: String
    private let counter = NSLock()
    private var nextSerial = 0

    /// Creates a new directory under `parent` (default: `$XDG_RUNTIME_DIR` when
    /// set, else the system's temporary directory).
    public init(parent: String? = nil) throws {
        let base = parent
            ?? ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? NSTemporaryDirectory()
        var template = Array((base.hasSuffix("/") ? base : base + "/").utf8CString.dropLast())
            + Array("servicehost-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw PluginError(.unreadable, file: base, reason: "cannot create the runtime directory: \(Errno(errno))")
        }
        // mkdtemp already uses 0700; say it explicitly so that a umask can never widen it.
        chmod(made, 0o700)
        path = String(cString: made)
        lock = StaleRuntimeDirectories.holdLock(in: path)
        StaleRuntimeDirectories.reclaim(in: base, keeping: path)
    }

    /// The descriptor holding the directory's lock file locked for as long as
    /// the host lives, which tells other hosts the directory is not stale.
    private var lock: Int32

    /// A path in the directory that no other load has used, ending in `name`.
    func uniquePath(for name: String) -> String {
        counter.lock()
        defer { counter.unlock() }
        nextSerial += 1
        return "\(path)/\(nextSerial)-\(name)"
    }

    /// Removes the directory and the copies in it. Images already loaded stay
    /// mapped: unlinking a file does not unmap it.
    func remove() {
        try? FileManager.default.removeItem(atPath: path)
        counter.withLock {
            if lock >= 0 { close(lock) }
            lock = -1
        }
    }

    deinit {
        remove()
    }
}
