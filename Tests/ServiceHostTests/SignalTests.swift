import Foundation
import Logging
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// Plugins and their children see a normal process: named threads with an
/// empty signal mask, default dispositions across exec; the host keeps its
/// own signals, survives SIGPIPE, and never waits forever on a second signal.
@Suite("Signals and host process")
struct SignalTests {
    private static func statusLine(_ key: String, in text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(key + ":") }
            .map { $0.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces) }
    }

    @Test func aServiceThreadIsNamedFromInsideAndBlocksNoSignal() async throws {
        let host = try await TestHost(plugins: [
            (file: "Signals.so", fixture: "signals.c", sidecar: "interval_ms = 50\n[config]\nreport_thread = \"true\"\n"),
            (file: "AVeryLongServiceName.so", fixture: "signals.c", sidecar: "interval_ms = 50\n[config]\nreport_thread = \"true\"\n"),
        ])
        for (service, expected) in [("Signals", "svc:Signals"), ("AVeryLongServiceName", "svc:AVeryLongSe")] {
            let line = try await host.logs.waitFor { $0.service == service && $0.message.hasPrefix("thread ") }
            let tid = try #require(Int32(line.message.dropFirst("thread ".count)))
            // The service loops on, so its thread is alive while we look.
            let comm = try String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)
            #expect(comm.trimmingCharacters(in: .newlines) == expected)
            let status = try String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8)
            #expect(Self.statusLine("SigBlk", in: status) == "0000000000000000")
        }
        await host.scheduler.shutdown()
    }

    /// Every thread servicehost itself creates says what it is in `ps -T`/`top -H`.
    @Test func theHostsOwnThreadsAreNamed() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Watched.so", sidecar: "interval_ms = 50\nwatchdog_ms = 60000\n")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Watched [ServiceHost] started")
        let expected: Set<String> = ["host:signals", "host:watchdog", "svc:Watched"]
        let names = try await ProcessCensus.threadNames(of: host.pid, including: expected)
        #expect(names.isSuperset(of: expected), "\(names)")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0, "\(host.outputText)")
    }

    @Test(arguments: ["thread", "process"], ["posix_spawn", "fork"])
    func programsAPluginStartsHaveAnEmptyMaskAndDefaultDispositions(isolation: String, spawnWith: String) async throws {
        let folder = try PluginFolder()
        let output = folder.path + "/child-status.txt"
        try await folder.add("signals.c", as: "Spawner.so",
                             sidecar: "interval_ms = 100\n[config]\nspawn_to = \"\(output)\"\nspawn_with = \"\(spawnWith)\"\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", isolation])
        try await host.waitForOutput("spawned status reader: 0")
        let status = try String(contentsOfFile: output, encoding: .utf8)
        #expect(Self.statusLine("SigBlk", in: status) == "0000000000000000", "\(status)")
        // Signals 1...31; glibc keeps 32 and 33 to itself (sigaction refuses
        // them), so whatever the test runner set for them is out of the host's reach.
        let ignored = try #require(UInt64(Self.statusLine("SigIgn", in: status) ?? "", radix: 16))
        #expect(ignored & 0x7FFF_FFFF == 0, "\(status)")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0, "\(host.outputText)")
    }

    @Test(arguments: ["default", "handler", "ignore"])
    func aThreadPluginReplacingSIGTERMCannotStopACleanShutdown(replacement: String) async throws {
        let folder = try PluginFolder()
        try await folder.add("signals.c", as: "Meddler.so", sidecar: "interval_ms = 100\n[config]\nsigterm = \"\(replacement)\"\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", "thread"])
        try await host.waitForOutput("replaced the host's signal handlers; they are restored")
        try await host.waitForOutput("service=Meddler [ServiceHost] started")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0, "\(host.outputText)")
        #expect(host.outputText.contains("all services stopped"))
    }

    @Test func aClosedStandardErrorDoesNotKillTheHost() async throws {
        let folder = try PluginFolder()
        let runtimeParent = folder.path + "/runtime"
        try FileManager.default.createDirectory(atPath: runtimeParent, withIntermediateDirectories: true)
        let fifo = folder.path + "/ready"
        #expect(mkfifo(fifo, 0o600) == 0)
        try await folder.add("signals.c", as: "Ready.so", sidecar: "interval_ms = 100\n[config]\nspawn_to = \"\(fifo)\"\n")
        let process = Process()
        process.executableURL = try HostProcess.binary
        process.arguments = ["run", "--plugins", folder.path]
        process.environment = ProcessInfo.processInfo.environment.merging(["XDG_RUNTIME_DIR": runtimeParent]) { $1 }
        let errors = try OutputPipe()
        errors.attach(to: process)
        let exited = Completion()
        process.terminationHandler = { _ in exited.complete() }
        try process.run()
        errors.closeWriting()
        // As `servicehost run 2>&1 | head -0`: nobody reads the host's log any more.
        try errors.reading.close()
        // The plugin's child writes to the FIFO once svc_create runs: the host is up.
        let ready: String = try await withDeadline(.seconds(20), waiting: "the plugin to start",
                                                    onTimeout: { close(open(fifo, O_WRONLY | O_NONBLOCK)) }) {
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    var text = ""
                    let descriptor = open(fifo, O_RDONLY | O_CLOEXEC)
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    while descriptor >= 0 {
                        let count = read(descriptor, &buffer, buffer.count)
                        if count <= 0 { break }
                        text += String(decoding: buffer[..<count], as: UTF8.self)
                    }
                    if descriptor >= 0 { close(descriptor) }
                    continuation.resume(returning: text)
                }
            }
        }
        #expect(ready.contains("SigBlk"))
        kill(process.processIdentifier, SIGTERM)
        try await withDeadline(.seconds(20), waiting: "the host to exit", onTimeout: { process.terminate() }) {
            await exited.wait()
        }
        process.waitUntilExit()
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        // It cleaned up: its runtime directory is gone.
        #expect(try FileManager.default.contentsOfDirectory(atPath: runtimeParent) == [])
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func aSecondSignalEndsTheWaitForAHungServiceAtOnce(signal: Int32) async throws {
        let name = signal == SIGTERM ? "SIGTERM" : "SIGINT"
        let folder = try PluginFolder()
        let stopTimeout = Duration.seconds(60)
        try await folder.add("faulty.c", as: "Stuck.so", sidecar: """
            stop_timeout_ms = \(stopTimeout.milliseconds)
            [config]
            fault = "wait"
            release_file = "\(folder.path)/never"
            fault_after = 1
            """)
        try await folder.add(as: "Fine.so")
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", "thread"])
        try await host.waitForOutput("fault wait in loop")
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        host.send(signal)
        try await host.waitForOutput("\(name): stopping every service")
        try await host.waitForOutput("service=Fine [ServiceHost] stopped: stopped by order")
        let began = ContinuousClock.now
        host.send(signal)
        let status = try await host.waitForExit(timeout: stopTimeout / 2)
        #expect(ContinuousClock.now - began < stopTimeout / 4)
        #expect(status != 0)
        #expect(host.outputText.contains("\(name) again: exiting without waiting; abandoned Stuck"), "\(host.outputText)")
        #expect(!host.outputText.contains("all services stopped"))
    }

    /// A SIGHUP reload scanning a new plugin whose constructor hangs (its
    /// start_timeout_ms is long) never holds up a SIGTERM: the host stops at
    /// once, and says the reload was abandoned.
    @Test func aSIGTERMDuringASIGHUPReloadIsNotHeldUpByTheReload() async throws {
        let folder = try PluginFolder()
        let startTimeout = Duration.seconds(60)
        try await folder.add(as: "Fine.so")
        let host = try HostProcess(["run", "--plugins", folder.path])
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        try await folder.add("constructor.c", as: "Hangs.so", defines: ["CONSTRUCTOR_FAULT=3"],
                             sidecar: "start_timeout_ms = \(startTimeout.milliseconds)\n")
        host.send(SIGHUP)
        try await host.waitForOutput("reloading \(folder.path)")
        let began = ContinuousClock.now
        host.send(SIGTERM)
        let status = try await host.waitForExit(timeout: startTimeout / 2)
        #expect(ContinuousClock.now - began < startTimeout / 4)
        #expect(status == 0, "\(host.outputText)")
        #expect(host.outputText.contains("SIGTERM: stopping every service (a SIGHUP reload in progress is abandoned)"), "\(host.outputText)")
        #expect(host.outputText.contains("all services stopped"))
    }

    @Test func theHostRaisesItsSoftDescriptorLimitToTheHardLimit() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so")
        let host = try HostProcess(["run", "--plugins", folder.path], shellSetup: "ulimit -Sn 64")
        try await host.waitForOutput("service=Fine [ServiceHost] started")
        let limits = try String(contentsOfFile: "/proc/\(host.pid)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let fields = line.dropFirst("Max open files".count).split(separator: " ")
        #expect(fields.count >= 2 && fields[0] == fields[1], "\(line)")
        #expect(fields.first != "64", "\(line)")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    /// With too few descriptors for every process-isolated service (in the
    /// host, which holds one per service, or in the fork server, which holds
    /// two), those that find none fail to start with that reason, naming their
    /// file; the others run and the host shuts down cleanly.
    @Test func servicesThatFindNoDescriptorLeftFailAloneWithTheReason() async throws {
        let folder = try PluginFolder()
        let count = 80
        for index in 1...count {
            try await folder.add(as: "P\(index).so", sidecar: "restart = \"never\"\ninterval_ms = 50\n[config]\nlog_loops = true\n")
        }
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", "process"], shellSetup: "ulimit -n 64")
        try await host.waitForOutput("] loaded \(count) plugins")
        try await host.waitForOutput("Too many open files")
        try await host.waitForOutput("[ServiceHost] started")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0, "\(host.outputText)")
        let lines = host.outputText.split(separator: "\n")
        let refused = lines.filter { $0.contains("Too many open files") }
        #expect(!refused.isEmpty)
        #expect(refused.allSatisfy { $0.contains("cannot make a socket for the worker") || $0.contains("the fork server could not fork a worker") },
                "\(refused)")
        #expect(lines.contains { $0.contains("[ServiceHost] started") && $0.contains("P") })
        #expect(refused.allSatisfy { line in (1...count).contains { line.contains("\(folder.path)/P\($0).so") } }, "\(refused)")
        #expect(!lines.contains { $0.contains(" critical ") }, "\(host.outputText)")
    }

    @Test func staleRuntimeDirectoriesAreReclaimedAndLiveOnesKept() throws {
        let folder = try PluginFolder()
        let parent = folder.path
        let stale = parent + "/servicehost-stale1"
        let live = parent + "/servicehost-live01"
        let unknown = parent + "/servicehost-nolock"
        for directory in [stale, live, unknown] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        }
        close(open(stale + "/.lock", O_CREAT | O_RDWR, 0o600))
        FileManager.default.createFile(atPath: stale + "/1-libOld.so", contents: Data([1, 2, 3]))
        // A live host: its lock file held locked.
        let held = open(live + "/.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        defer { close(held) }
        #expect(flock(held, LOCK_EX | LOCK_NB) == 0)

        let directory = try RuntimeDirectory(parent: parent)
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(FileManager.default.fileExists(atPath: live))
        #expect(FileManager.default.fileExists(atPath: unknown))
        // The new directory holds its own lock, so another host leaves it alone.
        let probe = open(directory.path + "/.lock", O_RDWR | O_CLOEXEC)
        defer { close(probe) }
        #expect(probe >= 0)
        #expect(flock(probe, LOCK_EX | LOCK_NB) == -1)
        let other = try RuntimeDirectory(parent: parent)
        #expect(FileManager.default.fileExists(atPath: directory.path))
        other.remove()
        directory.remove()
    }

    @Test func aPluginCannotForgeALogLine() async throws {
        let host = try await TestHost(plugins: [
            (file: "Forger.so", fixture: "signals.c", sidecar: "interval_ms = 100\n[config]\nmessage = 'a\\nFAKE host line\\e[31m'\n"),
        ])
        let line = try await host.logs.waitFor { $0.service == "Forger" && $0.message.hasPrefix("a") }
        #expect(line.message == #"a\nFAKE host line\x1b[31m"#)
        await host.scheduler.shutdown()
    }

    @Test func escapingCoversEveryControlCharacterAndMarksCutMessages() {
        #expect(PluginText.escaped("plain text, ünïcode") == "plain text, ünïcode")
        #expect(PluginText.escaped("a\r\tb\u{7F}\u{0}\u{9B}c\\") == #"a\r\tb\x7f\x00\x9bc\\"#)
        let logs = LogCapture()
        logs.logger.pluginLine(level: 1, String(repeating: "x", count: WorkerMessage.logLimit + 100))
        let message = logs.entries.last?.message ?? ""
        #expect(message.hasSuffix("… [truncated at 32 KiB]"))
        #expect(message.utf8.count < WorkerMessage.logLimit + 64)
    }
}
