import Foundation

/// Builds the benchmark plugins from `Benchmarks/Fixtures` with the system C
/// compiler (optimised, as users would ship them) into a temporary folder.
enum Fixtures {
    static let benchmarksRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // HostBenchmarks
        .deletingLastPathComponent()  // Benchmarks (targets)
        .deletingLastPathComponent()  // Benchmarks (package)
    static let include = benchmarksRoot.deletingLastPathComponent().appendingPathComponent("include")

    /// A new empty folder for one benchmark's plugins.
    static func folder(_ label: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("servicehost-bench-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Compiles `Fixtures/<source>` into `<folder>/<name>.so`, with an optional sidecar.
    @discardableResult
    static func plugin(_ source: String, named name: String, in folder: URL, sidecar: String? = nil,
                       defines: [String] = []) throws -> String {
        let output = folder.appendingPathComponent("\(name).so").path
        try compile(["-shared", "-fPIC"] + defines.map { "-D\($0)" }, source, to: output)
        if let sidecar {
            try sidecar.write(to: folder.appendingPathComponent("\(name).toml"), atomically: true, encoding: .utf8)
        }
        return output
    }

    /// Compiles `Fixtures/<source>` into an executable at `<folder>/<name>`.
    static func executable(_ source: String, named name: String, in folder: URL) throws -> String {
        let output = folder.appendingPathComponent(name).path
        try compile([], source, to: output)
        return output
    }

    private static func compile(_ flags: [String], _ source: String, to output: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["cc", "-O2", "-I", include.path] + flags
            + ["-o", output, benchmarksRoot.appendingPathComponent("Fixtures/\(source)").path]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "cc failed for \(source)"])
        }
    }

    /// The benchmark harness preloads its malloc interposer (a Swift library)
    /// into the benchmark process through LD_PRELOAD, and every child would
    /// inherit it: a trivial C program would then load the Swift runtime.
    /// Process benchmarks measure children as a supervisor would start them.
    static func withoutHarnessPreload() {
        unsetenv("LD_PRELOAD")
    }

    /// The `servicehost` executable that forks workers for process isolation:
    /// `$SERVICEHOST_EXECUTABLE` (set by Benchmarks/run), else the release build beside this package.
    static var workerExecutable: String {
        ProcessInfo.processInfo.environment["SERVICEHOST_EXECUTABLE"]
            ?? benchmarksRoot.deletingLastPathComponent().appendingPathComponent(".build/release/servicehost").path
    }
}
