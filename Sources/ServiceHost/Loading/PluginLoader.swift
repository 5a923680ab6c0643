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
    /// The largest plugin file read (see ``Limits/maxPluginSize``).
    let maxPluginSize: Int64
    /// Loads each new version once in a throwaway process first; `nil` when
    /// no fork server can be started (an embedder without `workerExecutable`).
    let scanner: PluginScanner?

    init(runtimeDirectory: RuntimeDirectory, checksSafety: Bool = true, maxPluginSize: Int64 = Limits.defaultMaxPluginSize,
         scanner: PluginScanner? = nil) {
        self.runtimeDirectory = runtimeDirectory
        self.checksSafety = checksSafety
        self.maxPluginSize = maxPluginSize
        self.scanner = scanner
    }

    /// Stages and opens `file`: the whole path from a user's file to a loaded image.
    /// - Parameter scanTimeout: how long the load-time scan may take (`start_timeout_ms`).
    func load(file: String, scanTimeout: Duration? = nil) throws(PluginError) -> PluginImage {
        try Self.open(try stage(file: file, scanTimeout: scanTimeout))
    }

    /// Reads `file`, checks it, writes the private copy that will be loaded,
    /// and has the scanner load that copy in a throwaway process.
    func stage(file: String, scanTimeout: Duration? = nil) throws(PluginError) -> StagedPlugin {
        let staged = try stageUnscanned(file: file)
        try scanner?.check(staged, timeout: scanTimeout)
        return staged
    }

    private func stageUnscanned(file: String) throws(PluginError) -> StagedPlugin {
        if checksSafety { try FileSafety.check(file, as: .plugin) }
        var readAt = timespec()
        clock_gettime(CLOCK_REALTIME, &readAt)
        let (bytes, identity) = try Self.read(file: file, maxSize: maxPluginSize)
        let elf = try bytes.withUnsafeBytes { buffer in
            Result { () throws(PluginError) in try ELFImage.inspect(buffer, file: file) }
        }.get()
        let name = file.split(separator: "/").last.map(String.init) ?? "plugin.so"
        let copy = runtimeDirectory.uniquePath(for: name)
        try Self.write(bytes, to: copy, file: file)
        return StagedPlugin(file: file, identity: identity, privateCopy: copy, containsSwiftCode: elf.containsSwiftCode,
                            content: ContentDigest(bytes), readAt: readAt)
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
    ///
    /// The file is opened with `O_NONBLOCK`, so that a FIFO, socket or device
    /// put in a plugin's place is turned away by `fstat` instead of hanging the
    /// host in `open()`; its size is checked against `maxSize` before anything
    /// is allocated, and it is read in chunks, so a sparse 64 GB file costs
    /// nothing but its refusal.
    static func read(file: String, maxSize: Int64 = Limits.defaultMaxPluginSize) throws(PluginError) -> ([UInt8], FileIdentity) {
        let descriptor = try openRegularFile(file)
        defer { close(descriptor.descriptor) }
        let info = descriptor.info
        guard Int64(info.st_size) <= maxSize else {
            throw PluginError(.unreadable, file: file,
                              reason: "is \(Int64(info.st_size)) bytes, larger than the limit of \(maxSize) bytes for a plugin file")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(min(Int64(info.st_size), 1 << 20)))
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                Glibc.read(descriptor.descriptor, buffer.baseAddress!, buffer.count)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw PluginError(.unreadable, file: file, reason: "cannot be read: \(Errno(errno))")
            }
            if count == 0 { break }
            // Grew while reading: what was checked is no longer what is read.
            guard Int64(bytes.count + count) <= maxSize else {
                throw PluginError(.unreadable, file: file,
                                  reason: "grew past the limit of \(maxSize) bytes for a plugin file while being read")
            }
            bytes.append(contentsOf: chunk[..<count])
        }
        return (bytes, FileIdentity(info))
    }

    /// Opens `file` for reading without ever blocking, and refuses anything
    /// but a regular file (a FIFO, a socket, a device, a directory).
    static func openRegularFile(_ file: String) throws(PluginError) -> (descriptor: Int32, info: stat) {
        let descriptor = Glibc.open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard descriptor >= 0 else {
            let error = errno
            // A Unix socket cannot be opened at all (ENXIO): say what it is rather than why open failed.
            var info = stat()
            if error != ENOENT, stat(file, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
                throw PluginError(.unreadable, file: file, reason: "is not a regular file (\(fileKind(info.st_mode)))")
            }
            throw PluginError(error == ENOENT ? .notFound : .unreadable, file: file,
                              reason: error == ENOENT ? "no such file" : "cannot be opened: \(Errno(error))")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            let error = Errno(errno)
            close(descriptor)
            throw PluginError(.unreadable, file: file, reason: "cannot be examined: \(error)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw PluginError(.unreadable, file: file, reason: "is not a regular file (\(fileKind(info.st_mode)))")
        }
        // A regular file never blocks; clear the flag so reads behave as usual.
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
        return (descriptor, info)
    }

    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        default: "not a regular file"
        }
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
