import Foundation

/// Builds real plugin shared objects from the C and Swift sources kept in
/// `Tests/Fixtures`, with the machine's compilers, into temporary directories.
enum PluginBuilder {
    /// The repository's top folder, found from this file's place in it.
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // Support
        .deletingLastPathComponent()  // ServiceHostTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    static let fixtures = repositoryRoot.appendingPathComponent("Tests/Fixtures")
    static let includeDirectory = repositoryRoot.appendingPathComponent("include")

    struct BuildFailure: Error, CustomStringConvertible {
        let command: [String]
        let output: String
        var description: String { "\(command.joined(separator: " ")) failed:\n\(output)" }
    }

    /// Compiles `Tests/Fixtures/<fixture>` (a C file) into `output`, a `.so` path.
    /// - Parameter defines: `NAME=VALUE` or `NAME` preprocessor definitions.
    @discardableResult
    /// - Parameter include: where `servicehost.h` comes from (by default the repository's).
    static func buildC(_ fixture: String, to output: URL, defines: [String] = [], extraFlags: [String] = [],
                       include: URL = includeDirectory) throws -> URL {
        let source = fixtures.appendingPathComponent(fixture).path
        try run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I", include.path]
            + defines.map { "-D\($0)" } + extraFlags + ["-o", output.path, source])
        return output
    }

    /// Compiles `Tests/Fixtures/<fixture>` (a Swift file) into `output`, a `.so` path.
    @discardableResult
    static func buildSwift(_ fixture: String, to output: URL, moduleName: String, defines: [String] = []) throws -> URL {
        let source = fixtures.appendingPathComponent(fixture).path
        try run(["swiftc", "-emit-library", "-parse-as-library", "-module-name", moduleName,
                 "-I", includeDirectory.path] + defines.flatMap { ["-D", $0] } + ["-o", output.path, source])
        return output
    }

    /// Runs a command and throws with its output when it exits non-zero.
    /// Compiles a plugin written with the Swift SDK (ServiceHostPlugin) as
    /// SwiftPM built the SDK beside the tests: its modules, its objects and
    /// swift-log's, and the macro's tool — what a package that depends on
    /// the SDK links.
    @discardableResult
    static func buildSwiftAgainstSDK(_ source: URL, to output: URL, moduleName: String) throws -> URL {
        let build = try HostProcess.binary.deletingLastPathComponent()
        let objects = try ["ServiceHostPlugin", "Logging"].flatMap { module in
            try FileManager.default.contentsOfDirectory(atPath: build.appendingPathComponent("\(module).build").path)
                .filter { $0.hasSuffix(".o") }.map { build.appendingPathComponent("\(module).build/\($0)").path }
        }
        try run(["swiftc", "-emit-library", "-parse-as-library", "-module-name", moduleName,
                 "-I", build.appendingPathComponent("Modules").path, "-I", includeDirectory.path,
                 "-load-plugin-executable", build.appendingPathComponent("ServiceHostPluginMacros-tool").path + "#ServiceHostPluginMacros",
                 "-o", output.path, source.path] + objects)
        return output
    }

    static func run(_ command: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        let pipe = try OutputPipe()
        pipe.attach(to: process)
        try process.run()
        pipe.closeWriting()
        let output = pipe.reading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BuildFailure(command: command, output: String(decoding: output, as: UTF8.self))
        }
    }
}

/// A directory under the system's temporary folder, removed when the value is released.
final class TemporaryDirectory: @unchecked Sendable {
    let url: URL
    var path: String { url.path }

    init(_ label: String = "servicehost-test") throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    deinit { try? FileManager.default.removeItem(at: url) }
}
