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
    private let ownsCopy: Bool

    init(file: String, identity: FileIdentity, privateCopy: String, containsSwiftCode: Bool, ownsCopy: Bool = true,
         content: ContentDigest? = nil) {
        self.content = content
        self.file = file
        self.identity = identity
        self.privateCopy = privateCopy
        self.containsSwiftCode = containsSwiftCode
        self.ownsCopy = ownsCopy
    }

    deinit {
        if ownsCopy { unlink(privateCopy) }
    }
}
