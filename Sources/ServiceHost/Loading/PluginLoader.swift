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

    init(runtimeDirectory: RuntimeDirectory) {
        self.runtimeDirectory = runtimeDirectory
    }

    func load(file: String) throws(PluginError) -> PluginImage {
        let (bytes, identity) = try Self.read(file: file)
        let elf = try bytes.withUnsafeBytes { buffer in
            Result { () throws(PluginError) in try ELFImage.inspect(buffer, file: file) }
        }.get()
        let name = file.split(separator: "/").last.map(String.init) ?? "plugin.so"
        let copy = runtimeDirectory.uniquePath(for: name)
        try Self.write(bytes, to: copy, file: file)

        guard let handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            unlink(copy)
            // dlerror names the private copy; the user knows the file by its own name.
            throw PluginError(.loadFailed, file: file, reason: "cannot be loaded: \(reason.replacingOccurrences(of: copy, with: file))")
        }
        let entryPoints: PluginEntryPoints
        do {
            entryPoints = try PluginEntryPoints { symbol in dlsym(handle, symbol) }
        } catch {
            Self.discard(handle: handle, copy: copy, containsSwiftCode: elf.containsSwiftCode)
            throw PluginError(.missingSymbol, file: file, reason: "does not export the required function '\(error.name)'")
        }
        let abiVersion = entryPoints.abiVersion()
        guard abiVersion == UInt32(SVC_ABI_VERSION) else {
            Self.discard(handle: handle, copy: copy, containsSwiftCode: elf.containsSwiftCode)
            throw PluginError(.abiMismatch, file: file,
                              reason: "was built for plugin ABI version \(abiVersion), this host implements version \(SVC_ABI_VERSION)")
        }
        return PluginImage(file: file, identity: identity, privateCopy: copy, handle: handle,
                           containsSwiftCode: elf.containsSwiftCode, entryPoints: entryPoints)
    }

    private static func discard(handle: UnsafeMutableRawPointer, copy: String, containsSwiftCode: Bool) {
        if !containsSwiftCode { dlclose(handle) }
        unlink(copy)
    }

    /// Reads the whole file; the identity is taken from the open descriptor so
    /// that it describes the bytes that were read.
    static func read(file: String) throws(PluginError) -> ([UInt8], FileIdentity) {
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
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
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o700)
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
