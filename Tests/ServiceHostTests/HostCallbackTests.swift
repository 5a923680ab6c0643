import Foundation
import Logging
import Testing
@testable import ServiceHost

/// `host->config` and `host->log` as a plugin sees them.
@Suite("Host callbacks")
struct HostCallbackTests {
    @Test func configReturnsTheSidecarValuesAndLogReachesTheHostLog() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "libGreeter.so", sidecar: """
            restart = "never"
            [config]
            greeting = "hello world"
            warn_at = 2
            done_after = 2
            """)
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let events = EventWaiter(scheduler)
        try await scheduler.addPlugins(directory: folder.path)
        scheduler.startAll()
        try await events.next("Greeter") { $0 == .stopped(.finished) }
        await scheduler.shutdown()

        let plugin = logs.entries { $0.service == "Greeter" && $0.metadata["origin"] == "plugin" }
        let create = try #require(plugin.first)
        #expect(create.level == .info)
        #expect(create.message == "create name=Greeter version=1.0.0 greeting=hello world abi=1 size=\(MemoryLayout<Int>.size * 11)")
        #expect(plugin.contains { $0.level == .warning && $0.message == "warn at 2" })
        #expect(plugin.contains { $0.level == .error && $0.message == "error at 2" })
        #expect(plugin.last?.message == "stop after 2 loops")
    }

    @Test func configFlattensNestedTablesAndMissesAreNull() async throws {
        // The probe reads done_after through host->config; a nested table and
        // a missing key must not confuse it.
        let folder = try PluginFolder()
        try await folder.add(as: "P.so", sidecar: """
            restart = "never"
            [config]
            done_after = 1
            [config.db]
            port = 5432
            """)
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        try await scheduler.addPlugins(directory: folder.path)
        let service = try #require(scheduler.service(named: "P"))
        #expect(service.configuration.settings == ["done_after": "1", "db.port": "5432"])
        let events = EventWaiter(scheduler)
        scheduler.startAll()
        try await events.next("P") { $0 == .stopped(.finished) }
        #expect(logs.entries { $0.message.contains("greeting=(none)") }.count == 1)
        await scheduler.shutdown()
    }
}
