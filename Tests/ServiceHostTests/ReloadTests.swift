import Foundation
import ServiceHostControl
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// `servicehost ctl reload` and SIGHUP: the plugins directory is the desired
/// state, driven through the real binary with real file operations.
@Suite("Reload", .serialized)
struct ReloadTests {
    private func ctl(_ host: HostProcess, _ arguments: String...) async throws -> (status: Int32, output: String) {
        try await HostProcess.run(["ctl", "--socket", host.controlSocket] + arguments)
    }

    @Test func aReloadMakesTheServicesMatchTheDirectoryAndADryRunOnlySays() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Tuned.so", sidecar: "interval_ms = 50\n")
        try await folder.add(as: "Gone.so", sidecar: "interval_ms = 50\n")
        try await folder.add(as: "Gave.so", sidecar: "retries = 0\n[config]\ncreate_result = -3\n")
        try await folder.add(as: "Same.so", sidecar: "interval_ms = 50\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Same [ServiceHost] started")
        try await host.waitForOutput("service=Gave [ServiceHost] failed:")

        try FileManager.default.removeItem(atPath: folder.directory.file("Gone.so").path)
        try folder.sidecar(for: "Tuned.so", "interval_ms = 50\n[config]\ngreeting = \"hello\"\n")
        try await folder.add(as: "New.so", sidecar: "interval_ms = 50\n")

        let dry = try await ctl(host, "reload", "--dry-run")
        #expect(dry.status == 0, "\(dry.output)")
        #expect(dry.output.hasPrefix("1 added, 1 changed, 1 removed, 1 unchanged, 1 retried, 0 refused (dry run: nothing done)"), "\(dry.output)")
        #expect(try await ctl(host, "status", "Gone").status == 0, "a dry run stops nothing")
        #expect(try await ctl(host, "status", "New").status == 4, "a dry run adds nothing")

        let wet = try await ctl(host, "reload")
        #expect(wet.status == 0, "\(wet.output)")
        #expect(wet.output.contains("1 added, 1 changed, 1 removed, 1 unchanged, 1 retried, 0 refused\n"), "\(wet.output)")
        #expect(wet.output.contains("  added: New\n"))
        #expect(wet.output.contains("  changed: Tuned\n"))
        #expect(wet.output.contains("  removed: Gone\n"))
        #expect(wet.output.contains("  retried: Gave\n"))
        try await host.waitForOutput("service=New [ServiceHost] started")
        try await host.waitForOutput("name=Tuned version=1.0.0 greeting=hello")
        #expect(try await ctl(host, "status", "Gone").status == 4)
        #expect(try await ctl(host, "status", "New", "Tuned", "Same").status == 0)
        #expect(host.outputText.contains("service=Gone [ServiceHost] its plugin file is gone; stopping and removing the service"))
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func anInvalidSidecarIsRefusedNamingItAndItsServiceKeepsRunning() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Kept.so", sidecar: "interval_ms = 50\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Kept [ServiceHost] started")
        try folder.sidecar(for: "Kept.so", "intervl_ms = 50\n")
        let reload = try await ctl(host, "reload")
        #expect(reload.status == 1)
        #expect(reload.output.contains("refused: \(folder.path)/Kept.toml:"), "\(reload.output)")
        #expect(reload.output.contains("interval_ms"), "the near miss is named: \(reload.output)")
        let json = try await ctl(host, "status", "--json", "Kept")
        let status = try #require(try ControlDocument.decoder().decode(ControlDocument.Services.self, from: Data(json.output.utf8)).services.first)
        #expect(status.state == .running)
        #expect(status.starts == 1)
        // SIGHUP reloads the same way.
        host.send(SIGHUP)
        try await host.waitForOutput("reload: 0 added, 0 changed, 0 removed, 1 unchanged, 0 retried, 1 refused")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func removingARequirementsPluginStopsItsDependentFirst() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Db.so", sidecar: "interval_ms = 50\n")
        try await folder.add(as: "Api.so", sidecar: "interval_ms = 50\nrequires = [\"Db\"]\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Api [ServiceHost] started")
        try FileManager.default.removeItem(atPath: folder.directory.file("Db.so").path)
        let reload = try await ctl(host, "reload")
        #expect(reload.output.contains("  removed: Db\n"), "\(reload.output)")
        let output = host.outputText
        let apiStopped = try #require(output.range(of: "service=Api [ServiceHost] stopped: stopped by order"))
        let dbStopped = try #require(output.range(of: "service=Db [ServiceHost] stopped: stopped by order"))
        #expect(apiStopped.lowerBound < dbStopped.lowerBound)
        let api = try await ctl(host, "status", "--json", "Api")
        let status = try #require(try ControlDocument.decoder().decode(ControlDocument.Services.self, from: Data(api.output.utf8)).services.first)
        #expect(status.state == .starting)
        #expect(status.waitingFor == ["Db"])
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }
}
