import CServiceHostABI
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Turns a plugin file into a loaded, checked ``PluginImage``.
///
/// Steps, each with its own error: read the whole file; validate its ELF
/// headers against its size (glibc's `dlopen` of a truncated object dies
/// with `SIGBUS`); write a private copy; `dlopen` the copy with
/// `RTLD_NOW | RTLD_LOCAL`; resolve the required symbols; check the ABI
/// version before anything else in the plugin is called.
struct PluginLoader: Sendable {
    let runtimeDirectory: RuntimeDirectory
    /// Refuse plugin files others could have written (see ``FileSafety``).
    let checksSafety: Bool

    init(runtimeDirectory: RuntimeDirectory, checksSafety: Bool = true) {
        self.runtimeDirectory = runtimeDirectory
        self.checksSafety = checksSafety
    }

    /// Stages and opens `file`: the whole path from a user's file to a loaded image.
    func load(file: String) throws(PluginError) -> PluginImage {
        try Self.open(try stage(file: file))
    }

    /// Reads `file`, checks it, and writes the private copy that will be loaded.
    func stage(file: String) throws(PluginError) -> StagedPlugin {
        if checksSafety { try FileSafety.check(file, as: .plugin) }
        let (bytes, identity) = try Self.read(file: file)
        let elf = try bytes.withUnsafeBytes { buffer in
            Result { () throws(PluginError) in try ELFImage.inspect(buffer, file: file) }
        }.get()
        let name = file.split(separator: "/").last.map(String.init) ?? "plugin.so"
        let copy = runtimeDirectory.uniquePath(for: name)
        try Self.write(bytes, to: copy, file: file)
        return StagedPlugin(file: file, identity: identity, privateCopy: copy, containsSwiftCode: elf.containsSwiftCode)
    }

    /// Loads a staged copy: `dlopen`, the required symbols, the ABI version.
    static func open(_ staged: StagedPlugin) throws(PluginError) -> PluginImage {
        let file = staged.file
        let copy = staged.privateCopy
        guard let handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            // dlerror names the private copy; the user knows the file by its own name.
            throw PluginError(.loadFailed, file: file, reason: "cannot be loaded: \(reason.replacingOccurrences(of: copy, with: file))")
        }
        let entryPoints: PluginEntryPoints
        do {
            entryPoints = try PluginEntryPoints { symbol in dlsym(handle, symbol) }
        } catch {
            if !staged.containsSwiftCode { dlclose(handle) }
            throw PluginError(.missingSymbol, file: file, reason: "does not export the required function '\(error.name)'")
        }
        let abiVersion = entryPoints.abiVersion()
        guard abiVersion == UInt32(SVC_ABI_VERSION) else {
            if !staged.containsSwiftCode { dlclose(handle) }
            throw PluginError(.abiMismatch, file: file,
                              reason: "was built for plugin ABI version \(abiVersion), this host implements version \(SVC_ABI_VERSION)")
        }
        return PluginImage(staged: staged, handle: handle, entryPoints: entryPoints)
    }

    /// Reads the whole file; the identity is taken from the open descriptor so
    /// that it describes the bytes that were read.
    static func read(file: String) throws(PluginError) -> ([UInt8], FileIdentity) {
        let descriptor = Glibc.open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            let error = errno
            throw PluginError(error == ENOENT ? .notFound : .unreadable, file: file,
                              reason: error == ENOENT ? "no such file" : "cannot be opened: \(Errno(error))")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw PluginError(.unreadable, file: file, reason: "cannot be examined: \(Errno(errno))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw PluginError(.unreadable, file: file, reason: "is not a regular file")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var total = 0
        while total < bytes.count {
            let count = bytes.withUnsafeMutableBytes { buffer in
                Glibc.read(descriptor, buffer.baseAddress! + total, buffer.count - total)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw PluginError(.unreadable, file: file, reason: "cannot be read: \(Errno(errno))")
            }
            if count == 0 { break }  // shrank while reading: validate what we have
            total += count
        }
        bytes.removeSubrange(total...)
        return (bytes, FileIdentity(info))
    }

    private static func write(_ bytes: [UInt8], to path: String, file: String) throws(PluginError) {
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o700)
        guard descriptor >= 0 else {
            throw PluginError(.unreadable, file: file, reason: "cannot make a private copy at \(path): \(Errno(errno))")
        }
        defer { close(descriptor) }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                Glibc.write(descriptor, buffer.baseAddress! + written, buffer.count - written)
            }
            if count < 0 {
                if errno == EINTR { continue }
                let error = Errno(errno)
                unlink(path)
                throw PluginError(.unreadable, file: file, reason: "cannot write a private copy at \(path): \(error)")
            }
            written += count
        }
    }
}
