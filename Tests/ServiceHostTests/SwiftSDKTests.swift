import Foundation
import Testing
@testable import ServiceHost

/// The SDK's example plugin as SwiftPM built it beside the tests.
enum SwiftSDKFixture {
    static var greeter: URL {
        get throws {
            let library = try HostProcess.binary.deletingLastPathComponent().appendingPathComponent("libGreeter.so")
            guard FileManager.default.fileExists(atPath: library.path) else {
                throw HostProcess.HostProcessError(description: "\(library.path) was not built (swift build builds it)")
            }
            return library
        }
    }
}

/// ServiceHostPlugin, the Swift SDK, through its example Plugins/Greeter: a
/// type exported with one line, its logger, typed config and thrown errors.
@Suite("Swift plugin SDK")
struct SwiftSDKTests {
    private func host(_ sidecar: String, isolation: Isolation = .thread) async throws -> (Scheduler, LogCapture, EventWaiter, PluginFolder) {
        let folder = try PluginFolder()
        try FileManager.default.copyItem(at: try SwiftSDKFixture.greeter, to: folder.directory.file("Greeter.so"))
        try folder.sidecar(for: "Greeter.so", sidecar)
        let logs = LogCapture()
        let scheduler = try Scheduler(configuration: .init(isolation: isolation, workerExecutable: try HostProcess.binary.path),
                                      logger: logs.logger)
        let events = EventWaiter(scheduler)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        scheduler.startAll()
        return (scheduler, logs, events, folder)
    }

    @Test(arguments: [Isolation.thread, .process])
    func aPluginTypeRunsWithItsConfigLoggerAndVersion(isolation: Isolation) async throws {
        let (scheduler, logs, events, _) = try await host("interval_ms = 1\nrestart = \"never\"\n[config]\nwho = \"SDK\"\ntimes = 3\n",
                                                          isolation: isolation)
        try await events.first("Greeter") { $0 == .stopped(.finished) }
        #expect(logs.entries.filter { $0.service == "Greeter" && $0.message.hasPrefix("Hello") }.map(\.message)
                == ["Hello, SDK!", "Hello, SDK!", "Hello, SDK!"])
        #expect(scheduler.status(of: "Greeter")?.version == "1.0.0")
        await scheduler.shutdown()
    }

    @Test func anInvalidConfigValueFailsTheStartWithItsReasonAndCode() async throws {
        let (scheduler, logs, events, _) = try await host("restart = \"never\"\n[config]\ntimes = \"often\"\n")
        try await events.first("Greeter") { if case .stopped(.startFailed) = $0 { true } else { false } }
        #expect(logs.entries.contains { $0.service == "Greeter" && $0.level == .error
                    && $0.message == "svc_create failed: [config] times = often is not a whole number" }, "\(logs.entries)")
        #expect(scheduler.status(of: "Greeter")?.lastExit?.contains("(code -22)") == true, "\(String(describing: scheduler.status(of: "Greeter")))")
        await scheduler.shutdown()
    }

    @Test func theSDKPluginCarriesNeitherTheHostNorTOMLKitNorLibffi() throws {
        let library = try SwiftSDKFixture.greeter
        let symbols = try Self.definedSymbols(of: library)
        #expect(Set(symbols).isSuperset(of: ["svc_abi_version", "svc_create", "svc_loop", "svc_stop", "svc_plugin_version"]))
        #expect(!symbols.contains { $0.hasPrefix("ffi_") || $0.contains("TOMLKit") || $0.contains("11ServiceHost") }, "\(symbols.filter { $0.hasPrefix("ffi_") || $0.contains("TOMLKit") })")
        let size = try FileManager.default.attributesOfItem(atPath: library.path)[.size] as? Int ?? 0
        #expect(size < 4 << 20, "a debug build of the SDK plugin is \(size) bytes")
    }

    /// The names `nm -D --defined-only` lists.
    private static func definedSymbols(of library: URL) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["nm", "-D", "--defined-only", library.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
    }
}
