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
    /// The checked copy this image was loaded from; kept while the image lives.
    let staged: StagedPlugin
    /// What `svc_plugin_version` returned, if the plugin exports it.
    let version: String?
    let entryPoints: PluginEntryPoints
    private let handle: UnsafeMutableRawPointer

    init(staged: StagedPlugin, handle: UnsafeMutableRawPointer, entryPoints: PluginEntryPoints) {
        self.staged = staged
        self.handle = handle
        self.entryPoints = entryPoints
        self.version = entryPoints.pluginVersion()
    }

    /// The plugin file the image was loaded from, as the user named it.
    var file: String { staged.file }
    /// The identity of `file` when it was read.
    var identity: FileIdentity { staged.identity }
    var containsSwiftCode: Bool { staged.containsSwiftCode }

    /// The version for log lines: the plugin's own, or a placeholder.
    var versionDescription: String { version ?? "(no version)" }

    deinit {
        if !staged.containsSwiftCode {
            dlclose(handle)
        }
    }
}
