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
    static func plugin(_ source: String, named name: String, in folder: URL, sidecar: String? = nil) throws -> String {
        let output = folder.appendingPathComponent("\(name).so").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["cc", "-shared", "-fPIC", "-O2", "-I", include.path, "-o", output,
                             benchmarksRoot.appendingPathComponent("Fixtures/\(source)").path]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "cc failed for \(source)"])
        }
        if let sidecar {
            try sidecar.write(to: folder.appendingPathComponent("\(name).toml"), atomically: true, encoding: .utf8)
        }
        return output
    }
}
