import Crypto
import Foundation
import Logging
import ServiceHostControl
import Synchronization
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// A native service that is never started: it logs nothing.
private final class Idle: BaseService, @unchecked Sendable {}

/// The control API and `servicehost ctl`, driven through the real binary
/// and its socket: status, orders by name, logs, exit codes, the socket's
/// security, and what a careless or hostile client sends.
@Suite("Control API and ctl", .serialized)
struct ControlTests {
    private func ctl(_ host: HostProcess, _ arguments: String...) async throws -> (status: Int32, output: String) {
        try await HostProcess.run(["ctl", "--socket", host.controlSocket] + arguments)
    }

    /// A copy of the binary that any user may run (the build folder may be private), for peers of another uid.
    private static func binaryForAnyone() throws -> (TemporaryDirectory, String) {
        let directory = try TemporaryDirectory("servicehost-binary")
        chmod(directory.path, 0o755)
        let copy = directory.file("servicehost").path
        try FileManager.default.copyItem(atPath: try HostProcess.binary.path, toPath: copy)
        chmod(copy, 0o755)
        return (directory, copy)
    }

    private static let canSwitchUser = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")

    @Test func statusShowsEveryServiceAndItsExitCodeSaysWhetherAllRun() async throws {
        let folder = try PluginFolder()
        let fine = try await folder.add(as: "Fine.so", sidecar: "interval_ms = 50\n")
        try await folder.add(as: "Done.so", sidecar: "restart = \"never\"\n[config]\ndone_after = 1\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        try await host.waitForOutput("service=Done [ServiceHost] stopped: finished")

        let all = try await ctl(host, "status")
        #expect(all.status == 3, "\(all.output)")
        let lines = all.output.split(separator: "\n")
        #expect(lines.first?.hasPrefix("NAME") == true)
        #expect(lines.contains { $0.hasPrefix("Fine ") && $0.contains(" running ") }, "\(all.output)")
        #expect(lines.contains { $0.hasPrefix("Done ") && $0.contains(" stopped ") }, "\(all.output)")

        #expect(try await ctl(host, "status", "Fine").status == 0)
        let unknown = try await ctl(host, "status", "Nope")
        #expect(unknown.status == 4)
        #expect(unknown.output.contains("no service named 'Nope'"))

        let json = try await ctl(host, "status", "--json")
        #expect(json.status == 3)
        let document = try ControlDocument.decoder().decode(ControlDocument.Services.self, from: Data(json.output.utf8))
        let status = try #require(document.services.first { $0.name == "Fine" })
        #expect(status.state == .running)
        #expect(status.isolation == "thread")
        #expect(status.starts == 1)
        #expect(status.path == fine)
        #expect(status.version == "1.0.0")
        #expect((status.uptime ?? -1) >= 0)
        #expect(status.sha256 == (try Self.sha256(of: fine)))
        #expect(json.output.contains("\"last_exit\" : \"finished\""), "snake_case keys: \(json.output)")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func ordersByNameWaitForTheirStateAndAnOperatorsStopOutlivesSIGHUP() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 20\n")
        try await folder.add(as: "Other.so", sidecar: "interval_ms = 20\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Fine [ServiceHost] started")

        let stop = try await ctl(host, "stop", "Fine")
        #expect(stop.status == 0)
        #expect(stop.output == "Fine: stopped\n")
        // A changed file and a SIGHUP do not start what an operator stopped.
        try await folder.overwriteInPlace("Fine.so", with: BuiltFixtures.shared.bytes("probe.c", defines: ["PROBE_VERSION=\"2.0.0\""]))
        host.send(SIGHUP)
        try await host.waitForOutput("reload: ")
        #expect(try await ctl(host, "status", "Fine").status == 3)

        // Started again by name: the new version, once.
        let start = try await ctl(host, "start", "Fine")
        #expect(start.status == 0, "\(start.output)")
        #expect(start.output == "Fine: running\n")
        let restart = try await ctl(host, "restart", "Fine", "Other")
        #expect(restart.output == "Fine: running\nOther: running\n", "\(restart.output)")
        let json = try await ctl(host, "status", "--json", "Fine")
        let status = try #require(try ControlDocument.decoder().decode(ControlDocument.Services.self, from: Data(json.output.utf8)).services.first)
        #expect(status.version == "2.0.0")
        #expect(status.starts == 3)

        let unknown = try await ctl(host, "stop", "Fine", "Nope")
        #expect(unknown.status == 4)
        #expect(unknown.output.contains("no service named 'Nope'"))
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func aStartThatFailsExitsOneSayingWhy() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Broken.so", sidecar: "retries = 0\n[config]\ncreate_result = -3\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Broken [ServiceHost] failed:")
        let start = try await ctl(host, "start", "Broken", "--timeout", "20")
        #expect(start.status == 1, "\(start.output)")
        #expect(start.output.contains("Broken: did not reach its state: failed (gave up after 0 restarts"), "\(start.output)")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func logsPrintsAServicesRecentLinesAndFollowsNewOnes() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Chatty.so", sidecar: "interval_ms = 20\n[config]\nlog_loops = true\n")
        try await folder.add(as: "Quiet.so", sidecar: "interval_ms = 50\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--log-level", "debug"])
        try await host.waitForOutput("loop 20")
        let logs = try await ctl(host, "logs", "Chatty", "-n", "3")
        #expect(logs.status == 0)
        let lines = logs.output.split(separator: "\n")
        #expect(lines.count == 3, "\(logs.output)")
        #expect(lines.allSatisfy { $0.contains(" debug loop ") }, "\(logs.output)")
        #expect(!logs.output.contains("Quiet"))
        let last = try #require(lines.last.flatMap { Int($0.split(separator: " ").last ?? "") })

        let follower = try HostProcess(["ctl", "--socket", host.controlSocket, "logs", "-f", "Chatty", "-n", "1"])
        try await follower.waitForOutput("loop \(last + 5)")
        follower.send(SIGTERM)
        _ = try await follower.waitForExit()
        #expect(try await ctl(host, "logs", "Nope").status == 4)

        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func usageErrorsExitTwoAndAnAbsentHostExitsFourNamingTheSocket() async throws {
        let directory = try TemporaryDirectory()
        let socket = directory.file("nobody-here.sock").path
        let absent = try await HostProcess.run(["ctl", "--socket", socket, "status"])
        #expect(absent.status == 4)
        #expect(absent.output.contains("cannot reach a servicehost at \(socket)"), "\(absent.output)")
        #expect(try await HostProcess.run(["ctl", "--socket", socket, "status", "--bogus"]).status == 2)
        #expect(try await HostProcess.run(["ctl", "--socket", socket, "start"]).status == 2)
    }

    @Test func theSocketIsPrivateALiveOneIsRefusedAndAStaleOneReplaced() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 50\n")
        let first = try HostProcess(["run", "--plugins", folder.path])
        try await first.waitForOutput("service=Fine [ServiceHost] started")
        var info = stat()
        #expect(stat(first.controlSocket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)

        let second = try await HostProcess.run(["run", "--plugins", folder.path, "--control-socket", first.controlSocket])
        #expect(second.status == 2)
        #expect(second.output.contains("control socket \(first.controlSocket) is in use: another servicehost answers there"),
                "\(second.output)")
        // The first host was not harmed.
        #expect(try await ctl(first, "status").status == 0)
        first.send(SIGKILL)
        _ = try await first.waitForExit()

        // SIGKILL left the socket behind: stale, so the next host replaces it.
        #expect(FileManager.default.fileExists(atPath: first.controlSocket))
        let third = try HostProcess(["run", "--plugins", folder.path, "--control-socket", first.controlSocket])
        try await third.waitForOutput("control API on \(first.controlSocket)")
        // status exits 3 while a service is still starting.
        try await third.waitForOutput("service=Fine [ServiceHost] started")
        #expect(try await HostProcess.run(["ctl", "--socket", first.controlSocket, "status"]).status == 0)
        third.send(SIGTERM)
        #expect(try await third.waitForExit() == 0)
        #expect(!FileManager.default.fileExists(atPath: first.controlSocket))

        // Something else at the path is never removed.
        let file = folder.directory.file("not-a-socket").path
        try "data".write(toFile: file, atomically: true, encoding: .utf8)
        let refused = try await HostProcess.run(["run", "--plugins", folder.path, "--control-socket", file])
        #expect(refused.status == 2)
        #expect(refused.output.contains("\(file) exists and is not a socket"))
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "data")
    }

    @Test(.enabled(if: canSwitchUser, "needs root and setpriv to act as another user"))
    func aPeerOfAnotherUserIsRefusedAndLoggedAndTheControlGroupMayOnlyRead() async throws {
        let (keep, binary) = try Self.binaryForAnyone()
        defer { _ = keep }
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 50\n")
        let runtime = try TemporaryDirectory("servicehost-socket")
        chmod(runtime.path, 0o755)
        let socket = runtime.file("control.sock").path
        let host = try HostProcess(["run", "--plugins", folder.path, "--control-socket", socket, "--control-group", "65534"])
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        var info = stat()
        #expect(stat(socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660)
        #expect(info.st_gid == 65534)
        let setpriv = URL(fileURLWithPath: "/usr/bin/setpriv")

        // A member of the control group reads, and may not order.
        let member = ["--reuid=65534", "--regid=65534", "--clear-groups", binary, "ctl", "--socket", socket]
        let read = try await HostProcess.run(member + ["status"], executable: setpriv)
        #expect(read.status == 0, "\(read.output)")
        let order = try await HostProcess.run(member + ["stop", "Fine"], executable: setpriv)
        #expect(order.status == 1)
        #expect(order.output.contains("members of the control group may only read"), "\(order.output)")

        // Another user who can reach the socket (as with a lax umask) is refused by its credentials, and logged.
        chmod(socket, 0o666)
        let stranger = ["--reuid=65533", "--regid=65533", "--clear-groups", binary, "ctl", "--socket", socket]
        let refused = try await HostProcess.run(stranger + ["status"], executable: setpriv)
        #expect(refused.status == 1, "\(refused.output)")
        #expect(refused.output.contains("only the host's user, root and members of the control group may use this socket"))
        try await host.waitForOutput("control: refused a connection from uid 65533")
        let own = try await HostProcess.run(["ctl", "--socket", socket, "status"])
        #expect(own.status == 0, "\(own.output)")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0, "\(host.outputText)")
    }

    @Test func badRequestsGetClearRefusalsAndNothingElseIsHarmed() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 50\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("control API on")
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        func exchange(_ request: String) async throws -> String {
            let client = try RawSocketClient(path: host.controlSocket)
            client.send(request)
            return try await client.readToEnd(timeout: .seconds(20))
        }
        #expect(try await exchange("GARBAGE\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        let unknownPath = try await exchange("GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(unknownPath.hasPrefix("HTTP/1.1 404"))
        #expect(unknownPath.contains("\"code\" : \"not_found\""))
        let wrongMethod = try await exchange("DELETE /v1/services/Fine HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(wrongMethod.hasPrefix("HTTP/1.1 405"))
        let badQuery = try await exchange("GET /v1/services/Fine/logs?lines=-1 HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(badQuery.hasPrefix("HTTP/1.1 400"))
        #expect(badQuery.contains("'lines' must be a whole number"))
        // Empty keys and values, stray separators: ignored, never a crash.
        for query in ["?=", "?&&=x&=", "?lines=", "?%zz=1", "?lines=%00"] {
            let odd = try await exchange("GET /v1/services/Fine/logs\(query) HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(odd.hasPrefix("HTTP/1.1 200") || odd.hasPrefix("HTTP/1.1 400"), "\(query): \(odd.prefix(200))")
        }
        let badWait = try await exchange("POST /v1/services/Fine/start?wait=maybe HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        #expect(badWait.hasPrefix("HTTP/1.1 400"))
        let huge = try await exchange("GET /v1/services/\(String(repeating: "x", count: 200_000)) HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(huge.hasPrefix("HTTP/1.1 4"), "\(huge.prefix(200))")
        let body = String(repeating: "y", count: 100_000)
        let bigBody = try await exchange("POST /v1/services/Fine/stop HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(bigBody.hasPrefix("HTTP/1.1 413"), "\(bigBody.prefix(200))")
        // None of it touched the service.
        let status = try await ctl(host, "status", "Fine")
        #expect(status.status == 0, "\(status.output)")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
        #expect(!host.outputText.contains("stop ordered"))
    }

    /// The same against the real binary: a client that connects and sends
    /// nothing is cut off after the host's 5 s, and `ctl status` is answered meanwhile.
    @Test(.timed) func aSilentClientOfTheHostIsCutOffAndCtlIsAnsweredMeanwhile() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 50\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        let requestTimeout = ControlServer.Configuration(path: "").requestTimeout
        let silent = try RawSocketClient(path: host.controlSocket)
        let began = ContinuousClock.now
        #expect(try await ctl(host, "status").status == 0)
        let cut = try await silent.readToEnd(timeout: requestTimeout * 4)
        #expect(cut.isEmpty)
        #expect(ContinuousClock.now - began >= requestTimeout)
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    /// Stopping the server (the host shutting down) ends a poll that waits
    /// for a service's next log line; it does not wait the poll out.
    @Test func aPendingLogPollDoesNotHoldUpTheServersStop() async throws {
        let directory = try TemporaryDirectory()
        let scheduler = try Scheduler(logger: Logger(label: "test"))
        try scheduler.add(Idle(name: "Quiet"))
        let logs = LogCapture()
        let api = ControlAPI(scheduler: scheduler, logs: ServiceLogRing(),
                             host: .init(version: "test", pluginsDirectory: directory.path), logger: logs.logger)
        let server = ControlServer(configuration: .init(path: directory.file("control.sock").path), api: api, logger: logs.logger)
        try await server.start()
        let wait = Duration.seconds(60)
        let poll = try RawSocketClient(path: directory.file("control.sock").path)
        let target = "/v1/services/Quiet/logs?wait_ms=\(wait.components.seconds * 1000)"
        poll.send("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try await logs.waitFor { $0.message == "control: GET \(target)" }
        let began = ContinuousClock.now
        await server.stop()
        #expect(ContinuousClock.now - began < wait / 4)
        await scheduler.shutdown()
    }

    /// Readers cannot take every connection with log polls: past a bound,
    /// a poll is refused at once, and orders and reads are still served.
    @Test func logPollsAreBoundedAndCannotCrowdOutOtherRequests() async throws {
        let directory = try TemporaryDirectory()
        let scheduler = try Scheduler(logger: Logger(label: "test"))
        try scheduler.add(Idle(name: "Quiet"))
        let logs = LogCapture()
        let api = ControlAPI(scheduler: scheduler, logs: ServiceLogRing(),
                             host: .init(version: "test", pluginsDirectory: directory.path), logger: logs.logger)
        let path = directory.file("control.sock").path
        let server = ControlServer(configuration: .init(path: path), api: api, logger: logs.logger)
        try await server.start()
        let target = "/v1/services/Quiet/logs?wait_ms=60000"
        var polls: [RawSocketClient] = []
        for _ in 0..<ControlAPI.maxLogPolls {
            let poll = try RawSocketClient(path: path)
            poll.send("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n")
            polls.append(poll)
        }
        // Every poll is in (each is logged as it is handled): the next one is refused at once.
        let seen = Atomic<Int>(0)
        _ = try await logs.waitFor { entry in
            entry.message == "control: GET \(target)" && seen.add(1, ordering: .relaxed).newValue == ControlAPI.maxLogPolls
        }
        let refused = try RawSocketClient(path: path)
        refused.send("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n")
        let answer = try await refused.readToEnd(timeout: .seconds(20))
        #expect(answer.hasPrefix("HTTP/1.1 503"), "\(answer.prefix(200))")
        #expect(answer.contains("log polls wait already"))
        let other = try RawSocketClient(path: path)
        other.send("GET /v1/host HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try await other.readToEnd(timeout: .seconds(20)).hasPrefix("HTTP/1.1 200"))
        await server.stop()
        await scheduler.shutdown()
        _ = polls
    }

    /// An answer larger than the socket's buffers (the status of 1,200
    /// services) arrives whole: the connection is closed only once all of it
    /// is written. (The client reads by Content-Length: a cut answer fails it.)
    @Test func aLargeAnswerArrivesWhole() async throws {
        let directory = try TemporaryDirectory()
        let scheduler = try Scheduler(logger: Logger(label: "test"))
        for index in 0..<1200 { try scheduler.add(Idle(name: "Service\(index)")) }
        let api = ControlAPI(scheduler: scheduler, logs: ServiceLogRing(),
                             host: .init(version: "test", pluginsDirectory: directory.path), logger: Logger(label: "test"))
        let path = directory.file("control.sock").path
        let server = ControlServer(configuration: .init(path: path), api: api, logger: Logger(label: "test"))
        try await server.start()
        // What is measured is completeness, not speed: a generous timeout.
        let answer = try await ControlClient(path: path, timeout: .seconds(120)).send(.GET, "/v1/services")
        #expect(answer.status == 200)
        #expect(answer.body.count > 256 * 1024)
        #expect(answer.body.last == UInt8(ascii: "}"))
        await server.stop()
        await scheduler.shutdown()
    }

    private static func sha256(of path: String) throws -> String {
        SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))).map { String(format: "%02x", $0) }.joined()
    }
}
