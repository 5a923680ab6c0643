import Foundation
import Synchronization
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// What passes between the host and a worker, whatever its size, and what
/// the host notices about a worker without its help.
@Suite("Worker sessions")
struct WorkerSessionTests {
    @Test func aConfigOfNearlyAMegabyteReachesAProcessIsolatedPlugin() async throws {
        let blob = String(repeating: "x", count: 900_000)
        let host = try await TestHost(isolation: .process, plugins: [
            (file: "Big.so", fixture: "worker_faults.c", sidecar: "[config]\nblob = \"\(blob)\"\n"),
        ])
        try await host.events.next("Big", { $0.isStarted }, timeout: .seconds(60))
        try await host.logs.waitFor { $0.service == "Big" && $0.message == "blob length 900000" }
        await host.scheduler.shutdown()
    }

    @Test func aMessageOverTheLimitIsRefusedWithItsSize() throws {
        let (host, worker) = try WorkerChannel.pair()
        let huge = WorkerMessage.start(WorkerAssignment(
            name: "Huge", file: "f", privateCopy: "p", containsSwiftCode: false, interval: .milliseconds(1),
            watchdog: nil, startTimeout: nil, settings: ["blob": String(repeating: "y", count: WorkerMessage.maxSize)]))
        guard case .tooLarge(let size) = host.send(huge, until: .now + .seconds(5)) else {
            Issue.record("an oversized message was not refused")
            return
        }
        #expect(size > WorkerMessage.maxSize)
        // Nothing of it went out: the next message arrives whole and first.
        #expect(host.send(.stop).succeeded)
        #expect(worker.receive(until: .now + .seconds(5)) == .message(.stop))
    }

    /// An embedder's settings are not bounded by the sidecar limit: an
    /// assignment too large for a worker fails that service's start with its
    /// size, and the service is not retried into a hang.
    @Test func anAssignmentTooLargeForAWorkerFailsTheStartWithItsSize() async throws {
        let host = try await TestHost(isolation: .process, plugins: [], start: false)
        let file = try await host.folder.add(as: "Big.so")
        let configuration = ServiceConfiguration(restart: .never, settings: ["blob": String(repeating: "x", count: 3 * 1024 * 1024)])
        try await host.scheduler.addPlugin(file: file, configuration: configuration)
        try host.scheduler.start("Big")
        let why = try await firstFailure(of: "Big", in: host, timeout: .seconds(20))
        #expect(why.contains("service 'Big': its assignment ([config] and paths) is "), "\(why)")
        #expect(why.contains("bytes encoded; a process-isolated service accepts at most \(Limits.maxWorkerMessage)"), "\(why)")
        await host.scheduler.shutdown()
    }

    @Test func aLargeMessageArrivesWholeWhileTheReceiverReadsConcurrently() throws {
        let (host, worker) = try WorkerChannel.pair()
        let settings = ["a": String(repeating: "a", count: 700_000), "b": "short"]
        let message = WorkerMessage.start(WorkerAssignment(
            name: "N", file: "f", privateCopy: "p", containsSwiftCode: true, interval: .milliseconds(5),
            watchdog: .milliseconds(7), startTimeout: nil, settings: settings))
        // More than a socket buffer: the sender waits for the reader to make room.
        let received = Mutex<WorkerChannel.Received?>(nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            received.withLock { $0 = worker.receive(until: .now + .seconds(30)) }
            done.signal()
        }
        thread.start()
        #expect(host.send(message, until: .now + .seconds(30)) == .sent)
        done.wait()
        #expect(received.withLock { $0 } == .message(message))
    }

    @Test func aSendToAReaderThatNeverReadsEndsAtTheDeadline() throws {
        let (host, worker) = try WorkerChannel.pair()
        let message = WorkerMessage.log(level: 1, message: String(repeating: "z", count: 30_000))
        var result = WorkerChannel.SendResult.sent
        // Fill the peer's queue; the first send that cannot go out waits for its deadline.
        for _ in 0..<10_000 {
            result = host.send(message, until: .now + .milliseconds(50))
            if result != .sent { break }
        }
        #expect(result == .timedOut)
        withExtendedLifetime(worker) {}
    }

    @Test func aMalformedDatagramIsReportedNotDropped() throws {
        let (host, worker) = try WorkerChannel.pair()
        var garbage: [UInt8] = [0x42, 1, 2, 3]
        _ = Glibc.send(host.descriptor, &garbage, garbage.count, 0)
        guard case .malformed(let why) = worker.receive(until: .now + .seconds(5)) else {
            Issue.record("a malformed datagram was not reported")
            return
        }
        #expect(why.contains("undecodable"))
    }

    /// Workers, scans and the fork server share one codec: every message
    /// comes back as it was sent, and a message cut short or out of range is
    /// refused rather than read as something else.
    @Test(arguments: [
        WorkerMessage.scan(privateCopy: "/run/x/libP.so"), .loading, .spawnWorker, .spawnScan, .reap(pid: 4242),
        .spawned(pid: -1), .spawned(pid: 77), .reaped(ExitStatus(.exited(3))), .reaped(ExitStatus(.killed(SIGSEGV))),
        .reaped(ExitStatus(.unknown)), .loaded(version: nil), .loadFailed(code: "missing symbol", reason: "no svc_loop"),
        .keptState(size: 0), .keptState(size: UInt64(Limits.maxKeptState)), .stateSaved(size: 12),
        .keptDescriptor(name: "listener"), .descriptorKept(name: "a.b_c-1", present: true),
        .descriptorKept(name: "x", present: false), .keepRefused(name: "bad name\n", code: -22),
    ])
    func everyMessageSurvivesTheCodecAndACutOneIsRefused(message: WorkerMessage) {
        let bytes = message.encoded()
        #expect(bytes.withUnsafeBytes { WorkerMessage(decoding: $0) } == message)
        if bytes.count > 1 {
            #expect(bytes.dropLast().withUnsafeBytes { WorkerMessage(decoding: $0) } == nil)
        }
    }

    /// A descriptor's name the host would refuse never decodes: a worker
    /// cannot make the host keep (or hand out) one under a name it checks.
    @Test func aKeptDescriptorUnderAnInvalidNameIsRefusedByTheCodec() {
        for message in [WorkerMessage.keptDescriptor(name: ""), .descriptorKept(name: "a/b", present: true),
                        .descriptorKept(name: String(repeating: "n", count: KeptState.maxNameLength + 1), present: false)] {
            #expect(message.encoded().withUnsafeBytes { WorkerMessage(decoding: $0) } == nil, "\(message)")
        }
    }

    @Test func keptStateLargerThanTheLimitIsRefused() {
        for message in [WorkerMessage.keptState(size: UInt64(Limits.maxKeptState) + 1), .stateSaved(size: UInt64(Limits.maxKeptState) + 1)] {
            #expect(message.encoded().withUnsafeBytes { WorkerMessage(decoding: $0) } == nil, "\(message)")
        }
    }

    /// Kept state crosses in a sealed memfd: it arrives whole; one the sender
    /// could still change (not sealed) is refused; and a descriptor nobody
    /// asked for is closed by the next receive, never left open.
    @Test func sealedBytesArriveWholeAndAnythingElseIsClosed() throws {
        let (host, worker) = try WorkerChannel.pair()
        let bytes: [UInt8] = Array("kept across runs".utf8)
        try bytes.withUnsafeBytes { try worker.send(.stateSaved(size: UInt64($0.count)), withSealedCopyOf: $0, until: .now + .seconds(5)) }
        #expect(host.receive(until: .now + .seconds(5)) == .message(.stateSaved(size: UInt64(bytes.count))))
        let taken = try #require(host.takePassedSealed(size: bytes.count))
        #expect(Array(taken.mapping) == bytes)
        // Kept as it came, it is sealed: nobody can change it under the host's mapping.
        #expect(write(taken.descriptor, "x", 1) == -1 && errno == EPERM)
        #expect(ftruncate(taken.descriptor, 0) == -1 && errno == EPERM)
        munmap(UnsafeMutableRawPointer(mutating: taken.mapping.baseAddress), taken.mapping.count)
        close(taken.descriptor)

        // A plain pipe is no sealed memfd.
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        // Descriptors of this process open on the pipe (other tests open theirs meanwhile).
        let pipe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(ends[0])")
        let open = {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).filter {
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) == pipe
            }.count
        }
        let before = open()
        try worker.send(.stateSaved(size: 1), passing: ends[0])
        #expect(host.receive(until: .now + .seconds(5)) == .message(.stateSaved(size: 1)))
        #expect(host.takePassedSealed(size: 1) == nil)
        #expect(open() == before, "the refused descriptor stayed open")

        // Sent unasked with a message nobody takes it for: closed by the next receive.
        try worker.send(.loading, passing: ends[0])
        #expect(host.receive(until: .now + .seconds(5)) == .message(.loading))
        #expect(open() == before + 1)
        worker.send(.created)
        #expect(host.receive(until: .now + .seconds(5)) == .message(.created))
        #expect(open() == before)

        // Three at once (a hostile worker): one is kept for the message, the others closed on arrival.
        let payload = WorkerMessage.loading.encoded()
        let header = MemoryLayout<cmsghdr>.size
        var control = [UInt8](repeating: 0, count: 64)
        let sent = control.withUnsafeMutableBytes { control -> Int in
            let cmsg = control.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
            cmsg.pointee.cmsg_len = header + 3 * 4
            cmsg.pointee.cmsg_level = SOL_SOCKET
            cmsg.pointee.cmsg_type = Int32(SCM_RIGHTS)
            for index in 0..<3 { (control.baseAddress! + header + index * 4).storeBytes(of: ends[0], as: Int32.self) }
            var bytes = payload
            return bytes.withUnsafeMutableBytes { bytes in
                var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
                var message = msghdr()
                return withUnsafeMutablePointer(to: &vector) { vector in
                    message.msg_iov = vector
                    message.msg_iovlen = 1
                    message.msg_control = control.baseAddress
                    message.msg_controllen = (header + 3 * 4 + 7) & ~7
                    return sendmsg(worker.descriptor, &message, 0)
                }
            }
        }
        #expect(sent == payload.count)
        #expect(host.receive(until: .now + .seconds(5)) == .message(.loading))
        #expect(open() == before + 1, "only the message's one descriptor is open")
        worker.send(.created)
        #expect(host.receive(until: .now + .seconds(5)) == .message(.created))
        #expect(open() == before)
    }

    @Test func aRequestToReapNoProcessIsRefused() {
        for pid: Int64 in [0, -1, Int64(Int32.max) + 1] {
            var bytes = WorkerMessage.reap(pid: 1).encoded()
            withUnsafeBytes(of: pid.littleEndian) { bytes.replaceSubrange(1..., with: $0) }
            #expect(bytes.withUnsafeBytes { WorkerMessage(decoding: $0) } == nil, "pid \(pid)")
        }
    }

    @Test func aSocketPassedWithARequestArrivesWithIt() throws {
        let (host, server) = try WorkerChannel.pair()
        let (passed, kept) = try WorkerChannel.pair()
        try host.send(.spawnScan, passing: passed.descriptor)
        let received = try #require(server.receivePassing())
        #expect(received.message == .spawnScan)
        let descriptor = try #require(received.passed)
        // The received descriptor is the same socket: what goes in one end comes out the other.
        let arrived = WorkerChannel(descriptor: descriptor)
        kept.send(.loading)
        #expect(arrived.receive(until: .now + .seconds(5)) == .message(.loading))
        withExtendedLifetime((passed, arrived)) {}
    }

    /// A worker the host killed whose socket never reaches its end (no fork
    /// server watches it here, as none would a worker stuck in the kernel)
    /// ends the wait at the kill's own deadline: the step gets its end, the
    /// thread does not spin or hang.
    @Test func aKilledWorkerThatNeverClosesItsSocketEndsTheWaitAtTheDeadline() async throws {
        let stopTimeout = Duration.milliseconds(100)
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["600"]
        try sleeper.run()
        defer { sleeper.terminate() }
        let (hostEnd, workerEnd) = try WorkerChannel.pair()
        let session = WorkerSession(
            launched: (hostEnd, WorkerLauncher.Forked(pid: sleeper.processIdentifier, server: 1)),
            launcher: WorkerLauncher(executable: "/bin/false"),
            settings: .init(file: "/plugins/Stuck.so", stopTimeout: stopTimeout, startTimeout: nil, watchdog: nil),
            logger: LogCapture().logger)
        let began = ContinuousClock.now
        let event = try await withDeadline(stopTimeout * 100, waiting: "the stop step to end") {
            try await Blocking.run { session.next(.stop) }
        }
        guard case .ended(let ending) = event else {
            Issue.record("the stop step returned \(event)")
            return
        }
        #expect(ending.overranStop)
        #expect(ContinuousClock.now - began >= stopTimeout * 2)
        sleeper.waitUntilExit()
        #expect(sleeper.terminationReason == .uncaughtSignal && sleeper.terminationStatus == SIGKILL)
        withExtendedLifetime(workerEnd) {}
    }

    /// A process whose leader thread has ended while another runs shows as a
    /// zombie in `/proc/PID/stat`; it is not dead, and not taken for dead.
    @Test func aZombieLeaderWithALiveThreadIsNotTakenForDead() async throws {
        let folder = try TemporaryDirectory("leader")
        let program = folder.file("leader_exits")
        try await Blocking.run {
            try PluginBuilder.run(["cc", "-O2", "-pthread", "-o", program.path,
                                   PluginBuilder.fixtures.appendingPathComponent("leader_exits.c").path])
        }
        let process = Process()
        process.executableURL = program
        try process.run()
        let pid = process.processIdentifier
        defer {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        let deadline = ContinuousClock.now + .seconds(20)
        func leaderState() -> Character? {
            ProcessCensus.read("/proc/\(pid)/stat").flatMap { stat in stat.lastIndex(of: ")").map { stat[stat.index($0, offsetBy: 2)] } }
        }
        while leaderState() != "Z", ContinuousClock.now < deadline { await Task.yield() }
        #expect(leaderState() == "Z")
        #expect(!ExitStatus.isZombie(pid))
    }

    // MARK: Worker death seen through the process, not its socket

    /// The reason of the first failed run of `name`.
    private func firstFailure(of name: String, in host: TestHost, timeout: Duration) async throws -> String {
        let stopped = try await host.events.next(name, {
            switch $0 {
            case .stopped(.failed), .stopped(.startFailed): true
            default: false
            }
        }, timeout: timeout)
        switch stopped.kind {
        case .stopped(.failed(let failure)), .stopped(.startFailed(let failure)): return failure.message
        default: return ""
        }
    }

    /// The scan's verdict is cached, so a load that hangs only later (here,
    /// once a marker file exists) happens in a worker: start_timeout_ms must
    /// still cut it short, as it does svc_create.
    @Test(.timed) func aLoadThatHangsOnlyInTheWorkerIsKilledAtTheStartTimeout() async throws {
        let startTimeout = Duration.milliseconds(300)
        let markers = try TemporaryDirectory("marker")
        let marker = markers.file("hang").path
        let host = try await TestHost(isolation: .process, plugins: [], start: false)
        try await host.folder.add("constructor.c", as: "Late.so", defines: ["CONSTRUCTOR_FAULT=4", "CONSTRUCTOR_MARKER=\"\(marker)\""],
                                  sidecar: "start_timeout_ms = \(startTimeout.milliseconds)\nrestart = \"never\"\n")
        #expect(try await host.scheduler.addPlugins(directory: host.folder.path).isEmpty)
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        let began = ContinuousClock.now
        try host.scheduler.start("Late")
        let why = try await firstFailure(of: "Late", in: host, timeout: startTimeout * 100)
        #expect(ContinuousClock.now - began >= startTimeout)
        #expect(ContinuousClock.now - began < startTimeout * 20)
        #expect(why.contains("hung: loading the plugin did not finish within start_timeout_ms (300 ms); worker killed"), "\(why)")
        await host.scheduler.shutdown()
    }

    @Test func aCrashedWorkerWhoseChildKeepsItsSocketIsSeenAtOnce() async throws {
        let stopTimeout = Duration.milliseconds(500)
        let host = try await TestHost(isolation: .process, plugins: [
            (file: "Forks.so", fixture: "worker_faults.c",
             sidecar: "stop_timeout_ms = \(stopTimeout.milliseconds)\nbackoff_initial_ms = 0\n[config]\nfault = \"fork_keep_socket\"\n"),
        ])
        defer {
            // The children sleep a minute holding the old sockets; end them.
            for entry in host.logs.entries(where: { $0.service == "Forks" && $0.message.hasPrefix("child ") }) {
                if let pid = Int32(entry.message.dropFirst(6)) { kill(pid, SIGKILL) }
            }
        }
        // Before, the host saw nothing until the child exited a minute later.
        let why = try await firstFailure(of: "Forks", in: host, timeout: stopTimeout * 20)
        #expect(why.contains("worker killed by SIGSEGV in svc_loop"), "\(why)")
        try await host.events.next("Forks", { $0.isRestarting }, timeout: stopTimeout * 20)
        await host.scheduler.shutdown()
    }

    @Test func aWorkerThatClosesItsSocketInCreateIsKilledAndReported() async throws {
        let stopTimeout = Duration.milliseconds(300)
        let host = try await TestHost(isolation: .process, plugins: [
            (file: "Closes.so", fixture: "worker_faults.c",
             sidecar: "stop_timeout_ms = \(stopTimeout.milliseconds)\nbackoff_initial_ms = 0\n[config]\nfault = \"close_fds\"\n"),
        ])
        let why = try await firstFailure(of: "Closes", in: host, timeout: stopTimeout * 30)
        #expect(why.contains("lost its connection to the host (the plugin closed the worker's socket)"), "\(why)")
        #expect(why.contains("in svc_create"), "\(why)")
        try await host.events.next("Closes", { $0.isRestarting }, timeout: stopTimeout * 30)
        await host.scheduler.shutdown()
        // Every worker was reaped: none is left as a zombie of the fork server.
    }

    // MARK: Watchdog in process isolation

    @Test func aHealthyProcessIsolatedServiceWithAWatchdogIsNeverReportedHung() async throws {
        let watchdog = Duration.milliseconds(50)
        let host = try await TestHost(isolation: .process, probes: [("P.so", """
            interval_ms = 10
            watchdog_ms = \(watchdog.milliseconds)
            [config]
            log_loops = true
            """)])
        // At least 8 watchdog periods of looping.
        try await host.logs.waitFor { $0.service == "P" && $0.message == "loop 40" }
        #expect(!host.events.seen.contains { if case .hung = $0.kind { true } else { false } })
        #expect(host.logs.entries { $0.message.contains("hung") }.isEmpty)
        await host.scheduler.shutdown()
    }

    /// The worker that has the runtime directory's copy of a plugin mapped (not the spare).
    @Test func aStoppedWorkerIsKilledByTheHostsWatchdog() async throws {
        let watchdog = Duration.milliseconds(250)
        let host = try await TestHost(isolation: .process, probes: [("P.so", """
            interval_ms = 10
            watchdog_ms = \(watchdog.milliseconds)
            backoff_initial_ms = 0
            [config]
            log_loops = true
            """)])
        try await host.logs.waitFor { $0.service == "P" && $0.message == "loop 3" }
        let worker = try host.workerRunningAPlugin()
        let stoppedAt = ContinuousClock.now
        kill(worker, SIGSTOP)
        let why = try await firstFailure(of: "P", in: host, timeout: watchdog * 100)
        // Silent for the liveness limit (4 periods, at least 1 s), counted from
        // its last heartbeat (at most half a period before the SIGSTOP), then killed.
        let limit = try #require(WorkerSession.livenessLimit(watchdog: watchdog))
        #expect(ContinuousClock.now - stoppedAt >= limit - watchdog)
        #expect(ContinuousClock.now - stoppedAt < limit * 10)
        #expect(why.contains("hung: the worker process made no progress"), "\(why)")
        #expect(why.contains("watchdog_ms = 250, process isolation"), "\(why)")
        #expect(why.contains("killed by SIGKILL") || why.contains("worker killed"), "\(why)")
        // Restarted by policy in a fresh worker.
        try await host.events.next("P", { $0 == .started(starts: 2) }, timeout: watchdog * 100)
        await host.scheduler.shutdown()
    }

    // MARK: Workers are normal processes that die with their host

    /// A plugin's constructor first runs in the load-time scan, a process the
    /// fork server forks: that one must not outlive a SIGKILLed host either.
    @Test func aProcessInsideASlowConstructorDiesWithAKilledHost() async throws {
        let folder = try PluginFolder()
        // Loading may take a minute, so the scan waits for the constructor.
        try await folder.add("slow_constructor.c", as: "Slow.so", sidecar: "start_timeout_ms = 120000\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", "process", "--log-level", "debug"])
        // Nothing is logged while a constructor runs: find the process that
        // has the plugin mapped among the host's descendants, until a deadline.
        let deadline = ContinuousClock.now + .seconds(20)
        var loader: Int32?
        while loader == nil, ContinuousClock.now < deadline {
            loader = ProcessCensus.children(of: host.pid).flatMap { ProcessCensus.children(of: $0) }.first {
                (ProcessCensus.read("/proc/\($0)/maps") ?? "").contains("Slow")
            }
            if loader == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        let pid = try #require(loader, "no process loaded Slow.so:\n\(host.outputText)")
        host.send(SIGKILL)
        _ = try await host.waitForExit()
        // No child of this process: no exit event to await, so check until a deadline.
        let gone = ContinuousClock.now + .seconds(20)
        while kill(pid, 0) == 0, ContinuousClock.now < gone {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(kill(pid, 0) != 0, "process \(pid) inside the constructor outlived its host")
    }

    @Test func aWorkerHasNoSignalBlockedOrIgnoredAndNamesItsThreads() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "interval_ms = 10\nwatchdog_ms = 60000\n[config]\nlog_loops = true\n")])
        try await host.logs.waitFor { $0.service == "P" && $0.message == "loop 2" }
        let worker = try host.workerRunningAPlugin()
        let status = try #require(ProcessCensus.read("/proc/\(worker)/status"))
        let fields = Dictionary(status.split(separator: "\n").compactMap { line -> (String, String)? in
            let parts = line.split(separator: ":", maxSplits: 1)
            return parts.count == 2 ? (String(parts[0]), parts[1].trimmingCharacters(in: .whitespaces)) : nil
        }, uniquingKeysWith: { first, _ in first })
        #expect(fields["SigBlk"] == "0000000000000000", "\(fields["SigBlk"] ?? "")")
        #expect(fields["SigIgn"] == "0000000000000000", "\(fields["SigIgn"] ?? "")")
        let names = try await ProcessCensus.threadNames(of: worker, including: ["worker:orders", "worker:alive"])
        #expect(names.isSuperset(of: ["worker:orders", "worker:alive"]), "\(names)")
        await host.scheduler.shutdown()
    }

    /// The fork server is spawned with an empty mask, default dispositions and
    /// none of the host's descriptors but its control socket (the test
    /// runner, like any host, has plenty open: pipes, log files, sockets).
    @Test func theForkServerStartsWithNoSignalBlockedOrIgnoredAndNoInheritedDescriptor() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "")])
        try await host.events.next("P") { $0.isStarted }
        let server = try #require(host.scheduler.forkServerPID)
        let status = try #require(ProcessCensus.read("/proc/\(server)/status"))
        #expect(status.contains("SigBlk:\t0000000000000000"), "\(status)")
        // It ignores SIGINT (a terminal's Ctrl-C is the host's to handle) and
        // SIGPIPE itself; no other standard signal may be ignored.
        let ignoredLine = try #require(status.split(separator: "\n").first { $0.hasPrefix("SigIgn:") })
        let ignored = try #require(UInt64(ignoredLine.dropFirst("SigIgn:".count).trimmingCharacters(in: .whitespaces), radix: 16))
        let standard: UInt64 = (1 << 31) - 1
        let ownChoice: UInt64 = (1 << (UInt64(SIGINT) - 1)) | (1 << (UInt64(SIGPIPE) - 1))
        #expect(ignored & standard & ~ownChoice == 0, "\(ignoredLine)")
        let descriptors = ProcessCensus.describeDescriptors(of: server)
        let open = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(server)/fd")) ?? []).compactMap { Int32($0) }
        let targets = open.filter { $0 > 2 }.map {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(server)/fd/\($0)")) ?? ""
        }
        // Its own only: the control socket and its epoll set; per child (the
        // worker and the spare it keeps ready) a pidfd and a socket (the
        // worker's end, or the link to the spare).
        let children = ProcessCensus.read("/proc/\(server)/task/\(server)/children")?.split(separator: " ").count ?? 0
        #expect(children == 2, "\(children) children")
        #expect(targets.filter { $0 == "anon_inode:[eventpoll]" }.count == 1, "\(descriptors)")
        #expect(targets.filter { $0 == "anon_inode:[pidfd]" }.count == children, "\(descriptors)")
        #expect(targets.filter { $0.hasPrefix("socket:") }.count == 1 + children, "\(descriptors)")
        #expect(targets.count == 2 + 2 * children, "\(descriptors)")
        await host.scheduler.shutdown()
    }

    // MARK: pthread_exit

    @Test func pthreadExitInTheLoopOfAWorkerIsAFailure() async throws {
        let host = try await TestHost(isolation: .process, plugins: [
            (file: "Exits.so", fixture: "worker_faults.c", sidecar: "backoff_initial_ms = 0\n[config]\nfault = \"pthread_exit\"\n"),
        ])
        let why = try await firstFailure(of: "Exits", in: host, timeout: .seconds(20))
        #expect(why.contains("svc_loop called pthread_exit"), "\(why)")
        try await host.events.next("Exits", { $0 == .started(starts: 2) })
        await host.scheduler.shutdown()
    }

    // MARK: The fork server

    /// A fork server out of descriptors (the kernel drops a socket passed
    /// past its limit) answers the request for a worker with that reason: the
    /// service's start fails saying so, and the server is not taken for stuck
    /// and replaced, which would have ended every other worker.
    @Test func aForkServerOutOfDescriptorsSaysSoAndIsKept() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "restart = \"never\"\n")])
        try await host.events.first("P") { $0.isStarted }
        let server = try #require(host.scheduler.forkServerPID)
        // The limit bounds descriptor numbers: 0-4 are the server's own (the
        // standard ones, its control socket, its epoll set), so at 5 it can take no new one.
        try PluginBuilder.run(["prlimit", "--pid", "\(server)", "--nofile=5:"])
        try await host.scheduler.restart("P")
        let why = try await firstFailure(of: "P", in: host, timeout: WorkerLauncher.answerTimeout * 10)
        #expect(why.contains("the fork server could not fork a worker: Too many open files"), "\(why)")
        #expect(host.scheduler.forkServerPID == server)
        #expect(!host.logs.entries.contains { $0.message.contains("a new one is started") })
        try PluginBuilder.run(["prlimit", "--pid", "\(server)", "--nofile=1024:"])
        try host.scheduler.start("P")
        try await host.events.next("P") { $0 == .started(starts: 2) }
        await host.scheduler.shutdown()
    }

    @Test(.timed) func aStoppedForkServerIsReplacedAndNeverHangsStartsOrShutdown() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "stop_timeout_ms = 500\n"),
                                                                     ("Q.so", "backoff_initial_ms = 0\n")])
        try await host.events.first("P") { $0.isStarted }
        try await host.events.first("Q") { $0.isStarted }
        let stuck = try #require(host.scheduler.forkServerPID)
        kill(stuck, SIGSTOP)
        defer { kill(stuck, SIGKILL) }
        let began = ContinuousClock.now
        // Stopping reaps the worker through the stopped server; starting asks it for a new one.
        try await host.scheduler.restart("P")
        try await host.events.next("P", { $0 == .started(starts: 2) }, timeout: WorkerLauncher.answerTimeout * 10)
        #expect(host.scheduler.forkServerPID != stuck)
        #expect(host.logs.entries { $0.message.contains("the fork server (pid \(stuck))") && $0.message.contains("a new one is started") }.count == 1)
        // Q's worker died with the replaced server; its end says so, and Q runs again in a new worker.
        let ended = try await host.events.first("Q", {
            if case .stopped(.failed) = $0 { true } else { false }
        }, timeout: WorkerLauncher.answerTimeout * 10)
        #expect(ended.description.contains("worker was killed with its fork server, which (pid \(stuck)) did not answer a request"),
                "\(ended)")
        try await host.events.first("Q", { $0 == .started(starts: 2) }, timeout: WorkerLauncher.answerTimeout * 10)
        await host.scheduler.shutdown()
        #expect(ContinuousClock.now - began < WorkerLauncher.answerTimeout * 10)
    }

    /// A fork server that dies is noticed at the next request and logged with
    /// how it ended; its workers died with it, say so, and run again in
    /// workers of a new one.
    @Test func aKilledForkServerIsLoggedAndItsWorkersRestartInANewOne() async throws {
        let host = try await TestHost(isolation: .process, probes: [("P.so", "backoff_initial_ms = 0\n")])
        try await host.events.first("P") { $0.isStarted }
        let dead = try #require(host.scheduler.forkServerPID)
        kill(dead, SIGKILL)
        try await host.events.first("P", { $0 == .started(starts: 2) }, timeout: WorkerLauncher.answerTimeout * 10)
        #expect(host.scheduler.forkServerPID != dead)
        #expect(host.logs.entries {
            $0.message.contains("the fork server (pid \(dead)) is gone (its control socket is closed), killed by SIGKILL")
        }.count == 1, "\(host.logs.entries { $0.message.contains("fork server") })")
        let ended = try await host.events.first("P", { if case .stopped(.failed) = $0 { true } else { false } })
        #expect(ended.description.contains("worker was killed with its fork server, which (pid \(dead)) is gone"), "\(ended)")
        await host.scheduler.shutdown()
    }

    /// A scan inside a constructor that never returns dies with its fork
    /// server, as workers do: a replaced (killed) server leaves none behind.
    @Test func aScanDiesWithItsForkServer() async throws {
        let host = try await TestHost(isolation: .process, plugins: [], start: false)
        try await host.folder.add("constructor.c", as: "Hangs.so", defines: ["CONSTRUCTOR_FAULT=3"], sidecar: "start_timeout_ms = 120000\n")
        let adding = Task { try await host.scheduler.addPlugins(directory: host.folder.path) }
        // Nothing announces the scan: find it among the fork server's children, until a deadline.
        let deadline = ContinuousClock.now + .seconds(20)
        var scan: Int32?
        while scan == nil, ContinuousClock.now < deadline {
            if let server = host.scheduler.forkServerPID {
                scan = ProcessCensus.children(of: server).first { (ProcessCensus.read("/proc/\($0)/maps") ?? "").contains("Hangs") }
            }
            if scan == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        let pid = try #require(scan, "no scan process loaded Hangs.so")
        kill(try #require(host.scheduler.forkServerPID), SIGKILL)
        while kill(pid, 0) == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(kill(pid, 0) != 0, "scan \(pid) outlived its fork server")
        _ = try await adding.value
        await host.scheduler.shutdown()
    }

    @Test func theForkServerStartsFromTheRunningImageNotItsReplacedFile() async throws {
        // A copy of servicehost that an "upgrade" replaces while it runs.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("upgrade-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let installed = directory.appendingPathComponent("servicehost")
        let binary = try HostProcess.binary
        try await Blocking.run { try FileManager.default.copyItem(at: binary, to: installed) }
        let folder = try PluginFolder()
        let host = try HostProcess(["run", "--plugins", folder.path, "--isolation", "process"], executable: installed)
        // Signals are handled from before the plugins are loaded.
        try await host.waitForOutput("loaded 0 plugins")
        // The upgrade: a new file (here one that cannot run) renamed over the old path.
        let replacement = directory.appendingPathComponent("servicehost.new")
        try Data("#!/bin/false\n".utf8).write(to: replacement)
        chmod(replacement.path, 0o755)
        _ = rename(replacement.path, installed.path)
        // The first process-isolated service starts the fork server only now.
        try await folder.add("probe.c", as: "P.so", sidecar: "")
        host.send(SIGHUP)
        try await host.waitForOutput("create name=P")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
    }

    @Test func pthreadExitInTheLoopOfAThreadIsolatedServiceIsAFailure() async throws {
        let host = try await TestHost(isolation: .thread, plugins: [
            (file: "Exits.so", fixture: "worker_faults.c", sidecar: "[config]\nfault = \"pthread_exit\"\n"),
        ])
        let failed = try await host.events.next("Exits") { $0.isFailed }
        guard case .failed(let why) = failed.kind else { return }
        #expect(why.contains("svc_loop called pthread_exit (thread isolation)"), "\(why)")
        #expect(host.scheduler.snapshot(of: "Exits")?.metadata.failed == true)
        await host.scheduler.shutdown()
    }
}
