import Foundation
import Testing
@testable import ServiceHost

/// Each kind of bad plugin input gets one clear error naming the file and the
/// reason, and a good plugin in the same directory keeps running.
@Suite("Bad input")
struct BadInputTests {
    /// Loads `folder` (which also holds a good probe, `Good.so`) and checks that
    /// exactly one error names `file` with `code` and a reason containing `reason`,
    /// and that Good keeps looping.
    private func expectRefused(_ fileName: String, code: PluginError.Code, reasonContains reason: String,
                               in folder: PluginFolder, alsoLoaded: [String] = []) async throws {
        try await folder.add(as: "Good.so", sidecar: "[config]\nlog_loops = true\n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let errors = try await scheduler.addPlugins(directory: folder.path)
        let file = "\(folder.path)/\(fileName)"
        #expect(errors.count == 1, "\(errors)")
        let error = try #require(errors.first)
        #expect(error.code == code)
        #expect(error.file == file)
        #expect(error.reason.contains(reason), "reason was: \(error.reason)")
        // One log line names the file and the reason.
        let lines = logs.entries { $0.level == .error && $0.message.contains(file) }
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first?.message.contains(reason) == true)
        #expect(Set(scheduler.snapshot().map(\.name)) == Set(["Good"] + alsoLoaded))

        scheduler.startAll()
        try await logs.waitFor { $0.service == "Good" && $0.message == "loop 3" }
        await scheduler.shutdown()
        #expect(logs.entries { $0.service == "Good" && $0.message.hasPrefix("stop after") }.count == 1)
    }

    @Test func aTextFile() async throws {
        let folder = try PluginFolder()
        try folder.write(Array("#!/bin/sh\necho not a plugin\n".utf8), as: "Text.so")
        try await expectRefused("Text.so", code: .notSharedObject, reasonContains: "not an ELF file", in: folder)
    }

    @Test func randomBytes() async throws {
        let folder = try PluginFolder()
        var generator = SystemRandomNumberGenerator()
        try folder.write((0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }, as: "Noise.so")
        try await expectRefused("Noise.so", code: .notSharedObject, reasonContains: "not an ELF file", in: folder)
    }

    @Test(arguments: [1_000, 4_000, 12_000])
    func aTruncatedPlugin(length: Int) async throws {
        let folder = try PluginFolder()
        let bytes = try await BuiltFixtures.shared.bytes("probe.c")
        try folder.write(Array(bytes.prefix(length)), as: "Half.so")
        try await expectRefused("Half.so", code: .truncated, reasonContains: "truncated", in: folder)
    }

    @Test func anEmptyFile() async throws {
        let folder = try PluginFolder()
        try folder.write([], as: "Empty.so")
        try await expectRefused("Empty.so", code: .notSharedObject, reasonContains: "empty", in: folder)
    }

    @Test func aMissingRequiredSymbol() async throws {
        let folder = try PluginFolder()
        try await folder.add("missing_loop.c", as: "NoLoop.so")
        try await expectRefused("NoLoop.so", code: .missingSymbol, reasonContains: "'svc_loop'", in: folder)
    }

    @Test func anUnresolvedSymbol() async throws {
        let folder = try PluginFolder()
        try await folder.add("unresolved.c", as: "Unresolved.so")
        try await expectRefused("Unresolved.so", code: .loadFailed, reasonContains: "undefined symbol: svc_fixture_undefined_function", in: folder)
    }

    @Test func anotherABIVersion() async throws {
        let folder = try PluginFolder()
        try await folder.add("abi_v2.c", as: "Future.so")
        try await expectRefused("Future.so", code: .abiMismatch, reasonContains: "plugin ABI version 2, this host implements version 1", in: folder)
    }

    @Test func aDirectoryNamedLikeAPlugin() async throws {
        let folder = try PluginFolder()
        try FileManager.default.createDirectory(at: folder.directory.file("Dir.so"), withIntermediateDirectories: false)
        try await expectRefused("Dir.so", code: .unreadable, reasonContains: "not a regular file", in: folder)
    }

    @Test func malformedSidecarTOML() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Broken.so", sidecar: "interval_ms = 10\nrestart = \n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        try await folder.add(as: "Good.so", sidecar: "[config]\nlog_loops = true\n")
        let errors = try await scheduler.addPlugins(directory: folder.path)
        let error = try #require(errors.first)
        #expect(errors.count == 1)
        #expect(error.code == .invalidConfiguration)
        #expect(error.file == "\(folder.path)/Broken.toml")
        #expect(error.reason.contains("line 2"), "reason was: \(error.reason)")
        scheduler.startAll()
        try await logs.waitFor { $0.service == "Good" && $0.message == "loop 3" }
        await scheduler.shutdown()
    }

    @Test func anUnknownSidecarKey() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Typo.so", sidecar: "intervall_ms = 10\n")
        try await expectRefused("Typo.toml", code: .invalidConfiguration, reasonContains: "unknown key 'intervall_ms'", in: folder)
    }

    @Test func duplicateServiceNames() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "libEcho.so")
        try await folder.add(as: "Echo.so")
        // Sorted by file name, "Echo.so" comes first and keeps the name.
        try await expectRefused("libEcho.so", code: .duplicateName, reasonContains: "service name 'Echo' is already used by Echo.so", in: folder,
                                 alsoLoaded: ["Echo"])
    }

    @Test func aMissingFile() throws {
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let error = #expect(throws: PluginError.self) { try scheduler.addPlugin(file: "/nonexistent/Gone.so") }
        #expect(error?.code == .notFound)
        #expect(error?.description == "/nonexistent/Gone.so: no such file")
    }

    @Test func aMissingPluginsDirectory() throws {
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let error = #expect(throws: PluginError.self) { try scheduler.addPlugins(directory: "/nonexistent/plugins") }
        #expect(error?.description == "/nonexistent/plugins: plugins directory does not exist")
    }

    @Test func ignoresDotFilesAndOtherFiles() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: ".Hidden.so")
        try await folder.add(as: "Real.so")
        try folder.write(Array("notes".utf8), as: "README.txt")
        let scheduler = try Scheduler(logger: LogCapture().logger)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        #expect(scheduler.snapshot().map(\.name) == ["Real"])
    }

    @Test func aFailingCreateIsLoggedWithFileAndCodeAndOthersRun() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Good.so", sidecar: "[config]\nlog_loops = true\n")
        try await folder.add(as: "Refuses.so", sidecar: "restart = \"never\"\n[config]\ncreate_result = -7\n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let events = EventWaiter(scheduler)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        scheduler.startAll()
        let stopped = try await events.next("Refuses") { $0.isStopped }
        #expect(stopped.kind == .stopped(.startFailed(ServiceFailure(code: -7, message: "\(folder.path)/Refuses.so: svc_create returned -7"))))
        let lines = logs.entries { $0.service == "Refuses" && $0.level == .error && $0.message.contains("svc_create returned -7") }
        #expect(lines.count == 1)
        #expect(lines.first?.message.contains("\(folder.path)/Refuses.so") == true)
        #expect(scheduler.snapshot(of: "Refuses")?.metadata.errors.map(\.code) == [-7])
        try await logs.waitFor { $0.service == "Good" && $0.message == "loop 3" }
        await scheduler.shutdown()
        // svc_stop is never called after a failed create.
        #expect(logs.entries { $0.service == "Refuses" && $0.message.hasPrefix("stop after") }.isEmpty)
    }
}
