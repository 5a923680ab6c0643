import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The built `servicehost` binary, run as users run it.
@Suite("servicehost binary")
struct EndToEndTests {
    @Test func runSupervisesEveryPluginAndSIGTERMStopsThemAllAndExitsZero() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "libAlpha.so", sidecar: "interval_ms = 5\n[config]\ngreeting = \"from alpha\"\n")
        try await folder.add(as: "Beta.so", sidecar: "interval_ms = 5\n[config]\nstop_after = 3\n")
        try await folder.add(as: "Gamma.so", sidecar: "interval_ms = 600000\n")
        try folder.write(Array("garbage".utf8), as: "Broken.so")

        let host = try HostProcess(["run", "--plugins", folder.path, "--log-level", "debug"])
        try await host.waitForOutput("service=Alpha [ServiceHost] started")
        try await host.waitForOutput("service=Gamma [ServiceHost] started")
        // Beta stops itself after three loops and is restarted by recovery.
        try await host.waitForOutput("service=Beta [ServiceHost] restarting (attempt #2)")
        try await host.waitForOutput("\(folder.path)/Broken.so: not an ELF file")
        host.send(SIGTERM)
        let status = try await host.waitForExit()
        let output = host.outputText
        #expect(status == 0, "\(output)")
        #expect(output.contains("greeting=from alpha"))
        #expect(output.contains("loaded 3 plugins from \(folder.path), 1 refused"))
        // Every svc_stop ran, once per successful create, Gamma's in the middle of its long interval.
        for name in ["Alpha", "Beta", "Gamma"] {
            let creates = output.components(separatedBy: "origin=plugin service=\(name) [ServiceHost] create name=").count - 1
            let stops = output.components(separatedBy: "origin=plugin service=\(name) [ServiceHost] stop after").count - 1
            #expect(creates >= 1, "\(name)")
            #expect(stops == creates, "\(name): \(creates) creates, \(stops) stops")
        }
        #expect(output.contains("all services stopped"))
        // The private runtime directory is gone with the host.
        let runtime = try #require(output.components(separatedBy: "plugin copies are loaded from ").dropFirst().first?
            .prefix { !$0.isWhitespace })
        #expect(runtime.contains("servicehost-"))
        #expect(!FileManager.default.fileExists(atPath: String(runtime)))
    }

    @Test func sigintStopsTheHostToo() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "P.so")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=P [ServiceHost] started")
        host.send(SIGINT)
        #expect(try await host.waitForExit() == 0)
        #expect(host.outputText.contains("stop after"))
    }

    @Test func sighupRestartsChangedPlugins() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "P.so")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=P [ServiceHost] started")
        try await folder.overwriteInPlace("P.so", with: BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        host.send(SIGHUP)
        try await host.waitForOutput("reloaded \(folder.path)/P.so: 1.0.0 -> 2.0.0")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func sighupStartsPluginsAddedOrFixedSince() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "First.so")
        try folder.write(Array("half a plugin".utf8), as: "Fixed.so")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=First [ServiceHost] started")
        try await host.waitForOutput("\(folder.path)/Fixed.so: not an ELF file")
        try await folder.add(as: "Fixed.so")
        try await folder.add(as: "Dropped.so")
        host.send(SIGHUP)
        try await host.waitForOutput("service=Fixed [ServiceHost] started")
        try await host.waitForOutput("service=Dropped [ServiceHost] started")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
        // The running service was left alone.
        #expect(host.outputText.components(separatedBy: "service=First [ServiceHost] started").count == 2)
    }

    @Test func noRecoveryLeavesAStoppedServiceStopped() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "P.so", sidecar: "[config]\nstop_after = 1\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--no-recovery"])
        try await host.waitForOutput("not restarting: restart policy is never, recovery is off")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
        #expect(!host.outputText.contains("restarting (attempt #2)"))
    }

    @Test func aMissingPluginsDirectoryExitsNonZeroWithAClearMessage() async throws {
        let (status, output) = try await HostProcess.run(["run", "--plugins", "/nonexistent/plugins"])
        #expect(status != 0)
        #expect(output.contains("/nonexistent/plugins: plugins directory does not exist"))
    }

    @Test func aBadLogLevelIsAValidationError() async throws {
        let (status, output) = try await HostProcess.run(["run", "--log-level", "loud"])
        #expect(status != 0)
        #expect(output.contains("'loud' is not a log level"))
    }

    @Test func theLogLevelMayBeWarnAndInAnyCase() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 50\n[config]\nwarn_at = 1\n")
        for level in ["warn", "WARNING", "Warn"] {
            let host = try HostProcess(["run", "--plugins", folder.path, "--log-level", level])
            try await host.waitForOutput("warn at 1")
            host.send(SIGTERM)
            #expect(try await host.waitForExit() == 0)
            // Only warnings and worse: no info line such as "started".
            #expect(!host.outputText.contains(" info "), "\(level): \(host.outputText)")
        }
    }

    @Test func anUnknownIsolationIsAValidationError() async throws {
        let (status, output) = try await HostProcess.run(["run", "--isolation", "container"])
        #expect(status != 0)
        #expect(output.contains("'container' is not an isolation; use 'thread' or 'process'."))
    }

    @Test func checkExitsZeroOnlyWhenEveryFileLoads() async throws {
        let folder = try PluginFolder()
        let good = try await folder.add(as: "Good.so")
        let other = try await folder.add("noop.c", as: "Noop.so")
        let bad = try await folder.add("missing_loop.c", as: "Bad.so")

        let (okStatus, okOutput) = try await HostProcess.run(["check", good, other])
        #expect(okStatus == 0, "\(okOutput)")
        #expect(okOutput.contains("\(good): OK, version 1.0.0"))
        #expect(okOutput.contains("\(other): OK, version noop"))

        let (badStatus, badOutput) = try await HostProcess.run(["check", good, bad, "/nonexistent/X.so"])
        #expect(badStatus == 1, "\(badOutput)")
        #expect(badOutput.contains("\(good): OK"))
        #expect(badOutput.contains("\(bad): FAILED [missing symbol]: does not export the required function 'svc_loop'"))
        #expect(badOutput.contains("/nonexistent/X.so: FAILED [not found]: no such file"))
    }

    @Test func versionPrintsTheVersion() async throws {
        let (status, output) = try await HostProcess.run(["--version"])
        #expect(status == 0)
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
    }
}
