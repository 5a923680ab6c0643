#if canImport(Glibc)
import Glibc
#endif

/// One version of a plugin file, loaded into the host's address space.
///
/// The image is unloaded (`dlclose`) when the last reference goes, unless it
/// contains Swift code: the Swift runtime keeps pointers into every Swift image
/// it has seen (type metadata, protocol conformances), and a dynamic cast after
/// such an image is unmapped crashes the process. Those images stay loaded.
final class PluginImage: @unchecked Sendable {
    /// The plugin file the image was loaded from, as the user named it.
    let file: String
    /// The identity of `file` when it was read.
    let identity: FileIdentity
    /// What `svc_plugin_version` returned, if the plugin exports it.
    let version: String?
    let containsSwiftCode: Bool
    let entryPoints: PluginEntryPoints

    private let handle: UnsafeMutableRawPointer
    private let privateCopy: String

    init(file: String, identity: FileIdentity, privateCopy: String, handle: UnsafeMutableRawPointer,
         containsSwiftCode: Bool, entryPoints: PluginEntryPoints) {
        self.file = file
        self.identity = identity
        self.privateCopy = privateCopy
        self.handle = handle
        self.containsSwiftCode = containsSwiftCode
        self.entryPoints = entryPoints
        self.version = entryPoints.pluginVersion()
    }

    /// The version for log lines: the plugin's own, or a placeholder.
    var versionDescription: String { version ?? "(no version)" }

    deinit {
        if !containsSwiftCode {
            dlclose(handle)
        }
        unlink(privateCopy)
    }
}
