import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runtime directories left behind by hosts that died without cleaning up
/// (SIGKILL, a crash). Each live host holds `.lock` in its directory with
/// `flock(LOCK_EX)`; the kernel drops the lock when the process dies, so a
/// directory whose lock can be taken belongs to nobody and is removed.
enum StaleRuntimeDirectories {
    static let lockName = ".lock"
    static let prefix = "servicehost-"

    /// Creates the lock file in the new `directory` and locks it; returns the
    /// descriptor, or -1. The file is locked under another name and renamed
    /// into place, so that another host starting at the same moment never
    /// sees an unlocked `.lock` in a live directory.
    static func holdLock(in directory: String) -> Int32 {
        let staging = directory + "/.lock-\(getpid())"
        let descriptor = open(staging, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { return -1 }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0, rename(staging, directory + "/" + lockName) == 0 else {
            unlink(staging)
            close(descriptor)
            return -1
        }
        return descriptor
    }

    /// Whether a file in a runtime directory is a plugin copy rather than the lock.
    static func isCopy(_ name: String) -> Bool { !name.hasPrefix(".") }

    /// Removes the runtime directories in `parent`, other than `keeping`,
    /// that belong to this user and whose lock no live process holds.
    /// Directories without a lock file (made by older hosts) are left alone.
    static func reclaim(in parent: String, keeping: String) {
        let base = parent.hasSuffix("/") ? parent : parent + "/"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return }
        let user = getuid()
        for name in names where name.hasPrefix(prefix) {
            let directory = base + name
            guard directory != keeping else { continue }
            var status = stat()
            guard lstat(directory, &status) == 0, status.st_mode & S_IFMT == S_IFDIR, status.st_uid == user else { continue }
            let descriptor = open(directory + "/" + lockName, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
            guard descriptor >= 0 else { continue }
            defer { close(descriptor) }
            var lockStatus = stat()
            guard fstat(descriptor, &lockStatus) == 0, lockStatus.st_mode & S_IFMT == S_IFREG,
                  flock(descriptor, LOCK_EX | LOCK_NB) == 0 else { continue }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}
