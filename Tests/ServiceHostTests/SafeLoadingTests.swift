import Foundation
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// The host refuses plugins, sidecars and directories others could have
/// written, unless told to allow them.
@Suite("Safe loading")
struct SafeLoadingTests {
    @Test func aGroupWritablePluginIsRefusedAndTheOthersLoad() async throws {
        let folder = try PluginFolder()
        let open = try await folder.add(as: "Open.so")
        try await folder.add(as: "Fine.so")
        chmod(open, 0o664)
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let errors = try await scheduler.addPlugins(directory: folder.path)
        #expect(errors.map(\.code) == [.insecure])
        #expect(errors.first?.description == "\(open): is writable by its group (mode 0664); refusing to load it — fix with chmod g-w, or run with --allow-insecure-plugins")
        #expect(scheduler.snapshot().map(\.name) == ["Fine"])
        #expect(logs.entries { $0.level == .error && $0.message.hasPrefix(open) }.count == 1)
        await scheduler.shutdown()
    }

    @Test func aWorldWritableSidecarIsRefused() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "P.so", sidecar: "interval_ms = 10\n")
        chmod(folder.directory.file("P.toml").path, 0o646)
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let errors = try await scheduler.addPlugins(directory: folder.path)
        #expect(errors.first?.code == .insecure)
        #expect(errors.first?.file == folder.directory.file("P.toml").path)
        #expect(errors.first?.reason.hasPrefix("is writable by others (mode 0646)") == true)
        await scheduler.shutdown()
    }

    @Test func aWorldWritableDirectoryIsRefusedWhole() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "P.so")
        chmod(folder.path, 0o777)
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let error = await #expect(throws: PluginError.self) { try await scheduler.addPlugins(directory: folder.path) }
        #expect(error?.code == .insecure)
        #expect(error?.reason.hasPrefix("plugins directory is writable by") == true)
        await scheduler.shutdown()
    }

    @Test func aLinkIsJudgedByItsTarget() async throws {
        let folder = try PluginFolder()
        let elsewhere = try TemporaryDirectory("elsewhere")
        let target = elsewhere.file("real.so")
        try await FileManager.default.copyItem(at: try BuiltFixtures.shared.c("probe.c"), to: target)
        chmod(target.path, 0o666)
        try FileManager.default.createSymbolicLink(atPath: folder.directory.file("Linked.so").path, withDestinationPath: target.path)
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let errors = try await scheduler.addPlugins(directory: folder.path)
        #expect(errors.first?.reason.contains("(a link to \(target.path))") == true, "\(errors)")
        await scheduler.shutdown()
    }

    @Test func aChangedFileThatBecameWritableIsRefusedOnReload() async throws {
        let host = try await TestHost(probes: [("P.so", "")])
        try await host.events.next("P") { $0.isStarted }
        try await host.folder.overwriteInPlace("P.so", with: BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        chmod(host.folder.directory.file("P.so").path, 0o666)
        try await host.scheduler.restart("P")
        let rejected = try await host.events.next("P") { $0.isReloadRejected }
        guard case .reloadRejected(let reason) = rejected.kind else { return }
        #expect(reason.hasPrefix("is writable by its group and by others (mode 0666)"))
        #expect(host.scheduler.snapshot(of: "P")?.metadata.pluginVersion == "1.0.0")
        await host.scheduler.shutdown()
    }

    @Test func theFlagLoadsThemAll() async throws {
        let folder = try PluginFolder()
        let open = try await folder.add(as: "Open.so", sidecar: "[config]\ngreeting = \"insecure\"\n")
        chmod(open, 0o666)
        chmod(folder.directory.file("Open.toml").path, 0o666)
        chmod(folder.path, 0o777)
        let host = try HostProcess(["run", "--plugins", folder.path, "--allow-insecure-plugins"])
        try await host.waitForOutput("greeting=insecure")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)

        let refused = try await HostProcess.run(["run", "--plugins", folder.path])
        #expect(refused.status != 0)
        #expect(refused.output.contains("\(folder.path): plugins directory is writable by"))
    }
}
