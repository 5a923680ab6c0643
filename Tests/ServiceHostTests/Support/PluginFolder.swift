import Foundation

/// A temporary plugins directory that tests fill with built fixtures and sidecars.
final class PluginFolder: @unchecked Sendable {
    let directory: TemporaryDirectory
    var path: String { directory.path }

    init() throws {
        directory = try TemporaryDirectory("plugins")
    }

    /// Copies a built C fixture into the folder as `<fileName>`.
    @discardableResult
    func add(_ fixture: String = "probe.c", as fileName: String, defines: [String] = [], sidecar: String? = nil) async throws -> String {
        let destination = directory.file(fileName)
        try? FileManager.default.removeItem(at: destination)
        try FileManager.default.copyItem(at: try await BuiltFixtures.shared.c(fixture, defines: defines), to: destination)
        if let sidecar {
            try self.sidecar(for: fileName, sidecar)
        }
        return destination.path
    }

    /// Writes `<name>.toml` for the plugin file `fileName`.
    func sidecar(for fileName: String, _ text: String) throws {
        var name = fileName.replacingOccurrences(of: ".so", with: "")
        if name.hasPrefix("lib") { name.removeFirst(3) }
        // Whole or not at all for a watcher reading the folder, without the
        // fsync of an atomic write: on a busy disk it held a pool thread for long.
        let temporary = directory.file(".\(name).toml.new")
        try Data(text.utf8).write(to: temporary)
        guard rename(temporary.path, directory.file("\(name).toml").path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: temporary.path])
        }
    }

    /// Writes arbitrary bytes as a file in the folder.
    @discardableResult
    func write(_ bytes: [UInt8], as fileName: String) throws -> String {
        let url = directory.file(fileName)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// Overwrites `fileName` in place (same inode, truncated first), as `cp new.so x.so` does.
    func overwriteInPlace(_ fileName: String, with bytes: [UInt8]) throws {
        let handle = try FileHandle(forWritingTo: directory.file(fileName))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(bytes))
        try handle.close()
    }
}

/// Fixtures compiled once per test run and per set of defines; tests copy them.
final class BuiltFixtures: @unchecked Sendable {
    static let shared = BuiltFixtures()

    private let lock = NSLock()
    private let directory = try! TemporaryDirectory("fixtures")
    private var built: [String: URL] = [:]

    /// The built fixture; compiled on a thread of its own, so that tests
    /// waiting for it never block Swift's cooperative pool (two threads on
    /// this machine), which the host's async API needs to make progress.
    func c(_ fixture: String, defines: [String] = []) async throws -> URL {
        try await Blocking.run { try self.build(fixture, defines: defines) }
    }

    private func build(_ fixture: String, defines: [String]) throws -> URL {
        let key = ([fixture] + defines).joined(separator: " ")
        // Compiling under the lock keeps two tests from building the same file at once.
        lock.lock()
        defer { lock.unlock() }
        if let url = built[key] { return url }
        let url = directory.file("\(built.count)-\(fixture).so")
        try PluginBuilder.buildC(fixture, to: url, defines: defines)
        built[key] = url
        return url
    }

    func bytes(_ fixture: String, defines: [String] = []) async throws -> [UInt8] {
        [UInt8](try Data(contentsOf: await c(fixture, defines: defines)))
    }
}

/// Runs blocking work (compilers, waiting on a lock) on a thread of its own.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}
