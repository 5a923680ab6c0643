import Foundation
import Testing
@testable import ServiceHost

/// Every plugin example in README.md is compiled, so that none can rot; the
/// C one is also run in the host.
@Suite("README examples")
struct ReadmeExamplesTests {
    /// The fenced blocks of README.md in `language` that are plugin code.
    private static func examples(_ language: String) throws -> [String] {
        let readme = try String(contentsOf: PluginBuilder.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```\(language)" {
                current = []
            } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n") + "\n")
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks.filter { $0.contains("svc_") || $0.contains("#servicePlugin") }
    }

    /// Builds Swift `source` as module `moduleName` against the SDK (as
    /// SwiftPM built it beside the tests) and returns the library's bytes.
    private static func buildAgainstSDK(_ source: String, moduleName: String) throws -> Data {
        let directory = try TemporaryDirectory("readme")
        let file = directory.file("\(moduleName).swift")
        try source.write(to: file, atomically: true, encoding: .utf8)
        return try Data(contentsOf: PluginBuilder.buildSwiftAgainstSDK(file, to: directory.file("output.so"), moduleName: moduleName))
    }

    /// Compiles `source` (saved as `fileName`) with `command` (source, output) and returns the library's bytes.
    private static func compile(_ source: String, as fileName: String, with command: (URL, URL) -> [String]) throws -> Data {
        let directory = try TemporaryDirectory("readme")
        let file = directory.file(fileName)
        try source.write(to: file, atomically: true, encoding: .utf8)
        let output = directory.file("output.so")
        try PluginBuilder.run(command(file, output))
        return try Data(contentsOf: output)
    }

    @Test func theCExampleCompilesWithoutWarningsAndRuns() async throws {
        // The first is the introduction's; the second keeps state (below).
        let examples = try Self.examples("c")
        #expect(examples.count == 2)
        let source = try #require(examples.first)
        #expect(source.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }.count <= 20, "the C plugin stays within 20 lines")
        let include = PluginBuilder.includeDirectory.path
        let library = try await Blocking.run {
            try Self.compile(source, as: "Ticker.c") { ["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I", include, "-o", $1.path, $0.path] }
        }
        let folder = try PluginFolder()
        _ = try folder.write([UInt8](library), as: "Ticker.so")
        try folder.sidecar(for: "Ticker.so", "restart = \"never\"\n[config]\nlimit = 3\n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let events = EventWaiter(scheduler)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        scheduler.startAll()
        try await events.first("Ticker") { $0 == .stopped(.finished) }
        #expect(logs.entries.filter { $0.service == "Ticker" && $0.message.hasPrefix("tick ") }.map(\.message)
                == ["tick 1 of 3", "tick 2 of 3", "tick 3 of 3"])
        await scheduler.shutdown()
    }

    @Test func theCPlusPlusExampleCompilesWithoutWarnings() async throws {
        let examples = try Self.examples("cpp")
        #expect(examples.count == 1)
        let include = PluginBuilder.includeDirectory.path
        for source in examples {
            let library = try await Blocking.run {
                try Self.compile(source, as: "Service.cpp") { ["c++", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I", include, "-o", $1.path, $0.path] }
            }
            #expect(library.count > 1000)
        }
    }

    /// The SDK example, compiled against the SDK as SwiftPM built it beside
    /// the tests (its modules, its objects and swift-log's, the macro's tool:
    /// what a package that depends on ServiceHostPlugin links), then run.
    @Test func theSwiftSDKExampleStaysShortCompilesAndRuns() async throws {
        let examples = try Self.examples("swift").filter { $0.contains("#servicePlugin") }
        #expect(examples.count == 2)
        let source = try #require(examples.first)
        #expect(source.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }.count <= 15, "the Swift plugin stays within 15 lines")
        #expect(!["Unsafe", "Unmanaged", "@_cdecl", "@c("].contains { source.contains($0) })
        let library = try await Blocking.run { try Self.buildAgainstSDK(source, moduleName: "Hello") }
        let folder = try PluginFolder()
        _ = try folder.write([UInt8](library), as: "Hello.so")
        try folder.sidecar(for: "Hello.so", "restart = \"never\"\n[config]\nwho = \"README\"\n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let events = EventWaiter(scheduler)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        scheduler.startAll()
        try await events.first("Hello") { $0 == .stopped(.finished) }
        #expect(logs.entries.filter { $0.service == "Hello" && $0.message.hasPrefix("Hello") }.map(\.message)
                == ["Hello, README! (1)", "Hello, README! (2)", "Hello, README! (3)"])
        await scheduler.shutdown()
    }

    @Test func theSwiftExamplesCompile() async throws {
        let examples = try Self.examples("swift").filter { $0.contains("svc_abi_version") }
        #expect(!examples.isEmpty)
        let include = PluginBuilder.includeDirectory.path
        for (index, source) in examples.enumerated() {
            let library = try await Blocking.run {
                try Self.compile(source, as: "Hello\(index).swift") {
                    ["swiftc", "-emit-library", "-parse-as-library", "-module-name", "Hello\(index)", "-I", include, "-o", $1.path, $0.path]
                }
            }
            #expect(library.count > 1000)
        }
    }

    /// The two counters of "Keeping state across reloads" (C, and Swift with
    /// the SDK) carry their count through a restart.
    @Test(arguments: ["c", "swift"])
    func theKeptStateExamplesCarryTheirCountThroughARestart(language: String) async throws {
        let source = try #require(try Self.examples(language).filter { $0.contains("state_save") || $0.contains("saveState") }.first)
        let include = PluginBuilder.includeDirectory.path
        let library = try await Blocking.run {
            if language == "c" {
                return try Self.compile(source, as: "Counter.c") {
                    ["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I", include, "-o", $1.path, $0.path]
                }
            }
            return try Self.buildAgainstSDK(source, moduleName: "Counter")
        }
        let folder = try PluginFolder()
        _ = try folder.write([UInt8](library), as: "Counter.so")
        try folder.sidecar(for: "Counter.so", "interval_ms = 1\n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        scheduler.startAll()
        try await logs.waitFor { $0.service == "Counter" && $0.message == "starting at 0" }
        let count = try await countCarriedThroughRestart(of: "Counter", scheduler: scheduler, logs: logs)
        #expect(count >= 5, "the second run started at \(count)")
        await scheduler.shutdown()
    }
}
