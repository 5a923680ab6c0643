import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif
@testable import ServiceHost

/// `servicehost new`: each language's project builds with its one command
/// (`make`) and runs in the host; names are checked.
@Suite("servicehost new")
struct NewCommandTests {
    /// Writes a project with the built binary; returns its folder.
    private func generate(_ name: String, _ language: String, in directory: TemporaryDirectory) async throws -> URL {
        let run = try await HostProcess.run(["new", name, "--language", language, "--directory", directory.path,
                                             "--sdk-path", PluginBuilder.repositoryRoot.path])
        #expect(run.status == 0, "\(run.output)")
        return directory.file(name)
    }

    /// Runs the project's plugins folder in a scheduler until its service finishes.
    private func runs(_ project: URL, _ name: String) async throws -> [String] {
        let sidecar = project.appendingPathComponent("plugins/\(name).toml")
        // The generated sidecar, with a count so that the run ends by itself.
        let text = try String(contentsOf: sidecar, encoding: .utf8)
            .replacingOccurrences(of: "interval_ms = 1000", with: "interval_ms = 1\nrestart = \"never\"")
            .replacingOccurrences(of: "times = 0 ", with: "times = 2 ")
        try text.write(to: sidecar, atomically: true, encoding: .utf8)
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let events = EventWaiter(scheduler)
        #expect(try await scheduler.addPlugins(directory: project.appendingPathComponent("plugins").path).isEmpty)
        scheduler.startAll()
        try await events.first(name) { $0 == .stopped(.finished) }
        await scheduler.shutdown()
        return logs.entries.filter { $0.service == name && $0.message.hasPrefix("Hello") }.map(\.message)
    }

    @Test func aCProjectBuildsWithMakeAndRuns() async throws {
        let directory = try TemporaryDirectory("new-c")
        let project = try await generate("Greets", "c", in: directory)
        let files = try FileManager.default.contentsOfDirectory(atPath: project.path).sorted()
        #expect(files == ["Greets.c", "Greets.toml", "Makefile", "README.md", "include"])
        try await Blocking.run { try PluginBuilder.run(["make", "-C", project.path, "--quiet"]) }
        #expect(try await runs(project, "Greets") == ["Hello, world! (1)", "Hello, world! (2)"])
        // Every sidecar key the host reads is in the generated one.
        let sidecar = try String(contentsOf: project.appendingPathComponent("Greets.toml"), encoding: .utf8)
        for key in SidecarFile.keys.keys where key != "config" { #expect(sidecar.contains("\(key) = "), "\(key)") }
        #expect(sidecar.contains("\n[config]"))
    }

    @Test(.enabled(if: RustSDKTests.cargo != nil, "cargo is not installed: the Rust project is not built"))
    func aRustProjectBuildsWithMakeAndRuns() async throws {
        let directory = try TemporaryDirectory("new-rust")
        let project = try await generate("Greets", "rust", in: directory)
        try await Blocking.run {
            try PluginBuilder.run(["env", "PATH=\((RustSDKTests.cargo! as NSString).deletingLastPathComponent):/usr/bin:/bin",
                                   "make", "-C", project.path, "--quiet"])
        }
        #expect(try await runs(project, "Greets") == ["Hello, world! (1)", "Hello, world! (2)"])
    }

    /// The Swift project's source, compiled against the SDK as SwiftPM built
    /// it beside the tests, and run; its `make` (a release build of the SDK
    /// and swift-syntax, minutes) is left to the closing note's measurement.
    @Test func aSwiftProjectsPluginCompilesAgainstTheSDKAndRuns() async throws {
        let directory = try TemporaryDirectory("new-swift")
        let project = try await generate("Greets", "swift", in: directory)
        let manifest = try String(contentsOf: project.appendingPathComponent("Package.swift"), encoding: .utf8)
        #expect(manifest.contains(".package(path: \"\(PluginBuilder.repositoryRoot.standardizedFileURL.path)\")"))
        let plugins = project.appendingPathComponent("plugins")
        try FileManager.default.createDirectory(at: plugins, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: project.appendingPathComponent("Greets.toml"), to: plugins.appendingPathComponent("Greets.toml"))
        try await Blocking.run {
            try PluginBuilder.buildSwiftAgainstSDK(project.appendingPathComponent("Sources/Greets/Greets.swift"),
                                                   to: plugins.appendingPathComponent("libGreets.so"), moduleName: "Greets")
        }
        #expect(try await runs(project, "Greets") == ["Hello, world! (1)", "Hello, world! (2)"])
    }

    @Test func badNamesAndTakenFoldersAreRefusedWithTheRule() async throws {
        let directory = try TemporaryDirectory("new-bad")
        for name in ["9lives", "has-dash", "with space", "lib.so", String(repeating: "a", count: 65)] {
            let run = try await HostProcess.run(["new", name, "--directory", directory.path])
            #expect(run.status == 2, "\(name)")
            #expect(run.output.contains("is not a valid service name: use a letter, then letters, digits or underscores (at most 64)"), "\(run.output)")
        }
        for name in ["String", "test", "ServicePlugin", "class"] {
            let run = try await HostProcess.run(["new", name, "--directory", directory.path])
            #expect(run.status == 2, "\(name)")
            #expect(run.output.contains("'\(name)' is a keyword or a name the templates use"), "\(run.output)")
        }
        try Data().write(to: directory.file("AFile"))
        let file = try await HostProcess.run(["new", "AFile", "--directory", directory.path, "--sdk-path", PluginBuilder.repositoryRoot.path])
        #expect(file.status == 1 && file.output.contains("exists and is not a folder"), "\(file.output)")
        _ = try await generate("Taken", "c", in: directory)
        let again = try await HostProcess.run(["new", "Taken", "--directory", directory.path, "--sdk-path", PluginBuilder.repositoryRoot.path])
        #expect(again.status == 1)
        #expect(again.output.contains("exists and is not empty"), "\(again.output)")
        // A FIFO where the header should be: refused by its type, never opened (which would block).
        let fake = try TemporaryDirectory("fake-checkout")
        try FileManager.default.createDirectory(at: fake.file("include"), withIntermediateDirectories: true)
        #expect(mkfifo(fake.file("include/servicehost.h").path, 0o644) == 0)
        let fifo = try await HostProcess.run(["new", "Fine", "--directory", directory.path, "--sdk-path", fake.path])
        #expect(fifo.status == 1)
        #expect(fifo.output.contains("include/servicehost.h is not a regular file of at most 1024 KiB"), "\(fifo.output)")
        let nowhere = try await HostProcess.run(["new", "Fine", "--directory", directory.path, "--sdk-path", directory.path])
        #expect(nowhere.status == 1)
        #expect(nowhere.output.contains("is not a ServiceHost checkout (no include/servicehost.h)"), "\(nowhere.output)")
    }
}
