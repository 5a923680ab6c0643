import Foundation
import Testing
@testable import ServiceHost

/// The plugins directory is resolved once, when the host starts.
@Suite("Plugins directory")
struct PluginsDirectoryTests {
    @Test func aPluginThatChangesDirectoryDoesNotBreakSIGHUP() async throws {
        let folder = try PluginFolder()
        try await folder.add("chdir_root.c", as: "Wanderer.so")
        let parent = folder.directory.url.deletingLastPathComponent()
        let relative = "./" + folder.directory.url.lastPathComponent
        let host = try HostProcess(["run", "--plugins", relative], currentDirectory: parent)
        try await host.waitForOutput("service=Wanderer [ServiceHost] started")
        try await folder.add(as: "Newcomer.so")
        host.send(SIGHUP)
        try await host.waitForOutput("service=Newcomer [ServiceHost] started")
        #expect(!host.outputText.contains("plugins directory does not exist"))
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func aRelativeDirectoryIsResolvedOnceByTheScheduler() throws {
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let current = FileManager.default.currentDirectoryPath
        let resolved = scheduler.resolvedDirectory("./plugins")
        #expect(resolved == (current == "/" ? "/plugins" : current + "/plugins"))
        #expect(scheduler.resolvedDirectory("./plugins") == resolved)
        #expect(scheduler.resolvedDirectory("/abs/plugins") == "/abs/plugins")
        #expect(PluginDirectory.absolute(".") == current)
    }
}

@Suite("Stray sidecars")
struct StraySidecarTests {
    @Test func aSidecarWithoutAPluginOrNamedAfterTheFileIsReported() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "libEcho.so")
        try "retries = 1\n".write(to: folder.directory.file("libEcho.toml"), atomically: true, encoding: .utf8)
        try "retries = 1\n".write(to: folder.directory.file("Ghost.toml"), atomically: true, encoding: .utf8)
        try await folder.add(as: "Kept.so", sidecar: "retries = 2\n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        let warnings = logs.entries { $0.level == .warning }.map(\.message)
        #expect(warnings == [
            "\(folder.path)/Ghost.toml: sidecar is not read: there is no plugin Ghost.so or libGhost.so beside it",
            "\(folder.path)/libEcho.toml: sidecar is not read: a sidecar is named after the service, not the file; did you mean Echo.toml?",
        ])
        #expect(Set(scheduler.snapshot().map(\.name)) == ["Echo", "Kept"])
        // A later scan (SIGHUP) does not repeat them; one that became stray since is reported.
        try "retries = 1\n".write(to: folder.directory.file("Later.toml"), atomically: true, encoding: .utf8)
        _ = try await scheduler.startNewPlugins(directory: folder.path)
        _ = try await scheduler.startNewPlugins(directory: folder.path)
        #expect(logs.entries { $0.level == .warning }.map(\.message) == warnings + [
            "\(folder.path)/Later.toml: sidecar is not read: there is no plugin Later.so or libLater.so beside it",
        ])
        await scheduler.shutdown()
    }
}
