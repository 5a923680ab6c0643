import Crypto
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One version of a plugin file, checked and copied to a private path,
/// ready to be loaded (in the host, or by a worker process).
///
/// The private copy is removed when the last reference goes. A loaded image
/// keeps its staged copy alive, so the file behind a mapping never
/// disappears while the image is in use.
final class StagedPlugin: @unchecked Sendable {
    /// The plugin file as the user named it.
    let file: String
    /// The identity of `file` when it was read.
    let identity: FileIdentity
    /// Where the checked copy lives.
    let privateCopy: String
    let containsSwiftCode: Bool
    /// A digest of the bytes that were read (see ``ContentDigest``); `nil` when not computed.
    let content: ContentDigest?
    /// The wall-clock time just before `file` was read, to tell whether a
    /// rewrite could have kept its identity (see ``PluginVersions``); `nil` when not known.
    let readAt: timespec?
    private let ownsCopy: Bool
    private let digest = Mutex<String?>(nil)

    init(file: String, identity: FileIdentity, privateCopy: String, containsSwiftCode: Bool, ownsCopy: Bool = true,
         content: ContentDigest? = nil, readAt: timespec? = nil) {
        self.content = content
        self.readAt = readAt
        self.file = file
        self.identity = identity
        self.privateCopy = privateCopy
        self.containsSwiftCode = containsSwiftCode
        self.ownsCopy = ownsCopy
    }

    /// The SHA-256 of the copy, in hex, for operators to compare with what
    /// they deployed; computed on first use (a status request), not on the
    /// reload path. `nil` if the copy cannot be read.
    /// Computed under the lock, so that concurrent first requests wait for one
    /// computation rather than each reading the file.
    var sha256: String? {
        digest.withLock { digest in
            if let digest { return digest }
            digest = Self.sha256(ofFile: privateCopy)
            return digest
        }
    }

    private static func sha256(ofFile path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = read(descriptor, &buffer, buffer.count)
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    deinit {
        if ownsCopy { unlink(privateCopy) }
    }
}
