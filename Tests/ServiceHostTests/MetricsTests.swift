import Foundation
import Testing
@testable import ServiceHost
import ServiceHostControl

#if canImport(Glibc)
import Glibc
#endif

/// `run --http`: metrics parsed by Prometheus' own parser, counters that
/// follow what happened, health endpoints, and nothing to order over TCP.
@Suite("Metrics and health over HTTP", .serialized)
struct MetricsTests {
    private func scrape(_ port: Int) async throws -> [PrometheusParser.Sample] {
        let answer = try await HTTPGet.request(port: port, "/metrics")
        #expect(answer.status == 200)
        return try await PrometheusParser.samples(of: answer.body)
    }

    @Test func countersFollowLoopsFailuresCrashesReloadsAndRemovalAndAHostileNameCannotBreakTheScrape() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 20\n")
        // Fails on every second loop call; restarted at once.
        try await folder.add(as: "Flaky.so", sidecar: "interval_ms = 5\nbackoff_initial_ms = 1\nbackoff_max_ms = 1\nrestart_limit = 1000\n[config]\nfail_after = 2\n")
        // Its worker dies of SIGSEGV on its second loop call.
        try await folder.add("faulty.c", as: "Crashy.so", sidecar: """
            isolation = "process"
            interval_ms = 5
            backoff_initial_ms = 1
            backoff_max_ms = 1
            restart_limit = 1000
            [config]
            fault = "segv"
            fault_after = 2
            """)
        // Three loops in a worker, then done: its stop report carries the count.
        try await folder.add(as: "Counted.so", sidecar: "isolation = \"process\"\nrestart = \"never\"\n[config]\ndone_after = 3\n")
        let hostile = #"We"ird\name"#
        try await folder.add(as: "\(hostile).so", sidecar: "interval_ms = 20\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--http", "127.0.0.1:0"])
        let port = try await HTTPGet.port(of: host)
        try await host.waitForOutput("service=Flaky [ServiceHost] restarting", count: 2)
        try await host.waitForOutput("service=Crashy [ServiceHost] restarting", count: 2)
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        try await host.waitForOutput("service=Counted [ServiceHost] stopped: finished")

        let first = try await scrape(port)
        let raw = try await HTTPGet.request(port: port, "/metrics").body
        #expect(raw.contains(#"servicehost_service_up{service="We\"ird\\name"} "#), "escaped in the text itself")
        #expect(first.named("servicehost_build_info").count == 1 && first.named("servicehost_build_info").first?.value == 1)
        for name in ["Fine", "Flaky", "Crashy", "Counted", hostile] {
            // One-hot: exactly one state is 1.
            let states = first.named("servicehost_service_state").filter { $0.labels["service"] == name }
            #expect(states.count == ServiceStatus.State.allCases.count, "\(name)")
            #expect(states.map(\.value).reduce(0, +) == 1, "\(name): \(states)")
            #expect(first.named("servicehost_service_restarts_total").filter { $0.labels["service"] == name }.count
                    == RestartCause.allCases.count, "every reason, zeros included, for \(name)")
        }
        #expect(first.value("servicehost_service_up", ["service": "Fine"]) == 1)
        #expect(first.value("servicehost_service_up", ["service": hostile]) == 1, "the name came back intact")
        #expect((first.value("servicehost_service_loops_total", ["service": "Fine"]) ?? 0) >= 1)
        #expect((first.value("servicehost_service_restarts_total", ["service": "Flaky", "reason": "error"]) ?? 0) >= 2)
        #expect(first.value("servicehost_service_restarts_total", ["service": "Flaky", "reason": "crash"]) == 0)
        #expect((first.value("servicehost_service_restarts_total", ["service": "Crashy", "reason": "crash"]) ?? 0) >= 2)
        #expect(first.value("servicehost_service_loops_total", ["service": "Counted"]) == 3, "a worker's loops reach the host")
        #expect(first.value("servicehost_service_state", ["service": "Counted", "state": "stopped"]) == 1)
        #expect((first.value("servicehost_service_starts_total", ["service": "Flaky"]) ?? 0) >= 3)
        #expect((first.value("servicehost_service_start_time_seconds", ["service": "Fine"]) ?? 0) > 1_700_000_000)
        #expect((first.value("servicehost_services", ["state": "running"]) ?? 0) >= 2)
        #expect((first.value("process_open_fds") ?? 0) > 3)
        #expect((first.value("process_resident_memory_bytes") ?? 0) > 1_000_000)

        // A hot reload and a removal.
        try await folder.overwriteInPlace("Fine.so", with: BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        try FileManager.default.removeItem(atPath: folder.directory.file("Flaky.so").path)
        host.send(SIGHUP)
        try await host.waitForOutput("reload: ")
        // The new version is created on the service's own thread, after the reload returned.
        try await host.waitForOutput("service=Fine [ServiceHost] started (start #2, version 2.0.0)")
        let second = try await scrape(port)
        #expect(second.value("servicehost_plugin_reloads_total", ["service": "Fine", "result": "ok"]) == 1)
        #expect(second.value("servicehost_plugin_reloads_total", ["service": "Fine", "result": "rolled_back"]) == 0)
        #expect(second.value("servicehost_service_restarts_total", ["service": "Fine", "reason": "reload"]) == 1)
        #expect(!second.contains { $0.labels["service"] == "Flaky" }, "a removed service's series are gone")

        // The same text over the control socket.
        let ctl = try await HostProcess.run(["ctl", "--socket", host.controlSocket, "metrics"])
        #expect(ctl.status == 0)
        let overSocket = try await PrometheusParser.samples(of: ctl.output)
        #expect(Set(overSocket.map(\.name)) == Set(second.map(\.name)))

        host.send(SIGTERM)
        _ = try await host.waitForExit()
    }

    @Test func nothingButMetricsAndHealthIsReachableOverTCP() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 20\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--http", "127.0.0.1:0"])
        let port = try await HTTPGet.port(of: host)
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        for (method, target) in [("POST", "/v1/services/Fine/stop"), ("GET", "/v1/services"), ("POST", "/v1/reload"),
                                 ("GET", "/v1/metrics"), ("GET", "/v1/services/Fine/logs")] {
            let answer = try await HTTPGet.request(method, port: port, target)
            #expect(answer.status == 404, "\(method) \(target): \(answer.status) \(answer.body)")
        }
        #expect(try await HTTPGet.request("POST", port: port, "/metrics").status == 405)
        let live = try await HTTPGet.request(port: port, "/livez")
        #expect(live.status == 200 && live.body == "ok\n")
        let status = try await HostProcess.run(["ctl", "--socket", host.controlSocket, "status", "Fine"])
        #expect(status.status == 0, "still running: \(status.output)")
        host.send(SIGTERM)
        _ = try await host.waitForExit()
    }

    @Test func readyzTurnsUnreadyWhenAServiceFailsAndReadyWhenItRunsAgain() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 20\n")
        try await folder.add(as: "Breaks.so", sidecar: "retries = 0\n[config]\ncreate_result = -3\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--http", "127.0.0.1:0"])
        let port = try await HTTPGet.port(of: host)
        try await host.waitForOutput("service=Breaks [ServiceHost] failed")
        try await host.waitForOutput("initial start complete: ")

        let failing = try await HTTPGet.request(port: port, "/readyz")
        #expect(failing.status == 503)
        let lines = failing.body.split(separator: "\n").map(String.init)
        #expect(lines.first == "[+]initial-start ok")
        #expect(lines.contains("[+]Fine ok"))
        #expect(lines.contains { $0.hasPrefix("[-]Breaks failed: ") }, "\(lines)")
        #expect(lines.last == "readyz check failed")

        // Fixed: the sidecar without the failure, and a reload.
        try folder.sidecar(for: "Breaks.so", "interval_ms = 20\n")
        host.send(SIGHUP)
        try await host.waitForOutput("service=Breaks [ServiceHost] started")
        let ready = try await HTTPGet.request(port: port, "/readyz")
        #expect(ready.status == 200 && ready.body == "ok\n", "\(ready.body)")
        let verbose = try await HTTPGet.request(port: port, "/readyz?verbose")
        #expect(verbose.body == "[+]initial-start ok\n[+]Fine ok\n[+]Breaks ok\nreadyz check passed\n")
        host.send(SIGTERM)
        _ = try await host.waitForExit()
    }

    @Test func anAddressInUseIsAClearStartupError() async throws {
        let folder = try PluginFolder()
        let first = try HostProcess(["run", "--plugins", folder.path, "--http", "127.0.0.1:0"])
        let port = try await HTTPGet.port(of: first)
        let second = try await HostProcess.run(["run", "--plugins", folder.path, "--http", "127.0.0.1:\(port)",
                                                "--control-socket", folder.directory.file("second.sock").path])
        #expect(second.status == 2)
        #expect(second.output.contains("--http 127.0.0.1:\(port) cannot be listened on"), "\(second.output)")
        first.send(SIGTERM)
        _ = try await first.waitForExit()
    }
}
