import CProcessShims
import CThreadShims
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The host's side of the fork server: starts it on first use, asks it for
/// workers and to reap them.
final class WorkerLauncher: @unchecked Sendable {
    let executable: String
    /// One request and its answer at a time on the control socket.
    private let lock = NSLock()
    private var control: WorkerChannel?
    private var serverPID: pid_t = 0

    /// When the running fork server was spawned, until it first answered:
    /// that answer also waits for it to start (a new process, the Swift
    /// runtime, a spare worker).
    private var serverStarting: ContinuousClock.Instant?
    /// Set by ``shutdown()``: no fork server is started after it.
    private var isShutDown = false
    /// The number of the running fork server (see ``Forked``).
    private var serverNumber = 0
    /// Why each replaced fork server was replaced, by number; one entry per
    /// replacement, which takes a stopped or dead server.
    private var replacements: [Int: String] = [:]
    private let logger: Logger
    /// How long the fork server may take to answer a request before it is
    /// taken for stopped or stuck, killed and replaced: a fork or a `waitpid`
    /// of a process already dead takes a fraction of this.
    static let answerTimeout = Limits.forkServerAnswerTimeout

    init(executable: String, logger: Logger = Logger(label: "servicehost.fork-server")) {
        self.executable = executable
        self.logger = logger
        Wakeup.installHandler()
    }

    struct LaunchError: Error, CustomStringConvertible {
        let description: String
    }

    /// A new worker process, connected. The caller sends the assignment at
    /// once: the socket holds it until the worker reads it, so no handshake
    /// adds a round trip to every restart. The channel is the only descriptor
    /// the host holds for the worker: the fork server writes the worker's exit
    /// status on it when the worker dies, then ends it (see ``ForkServer``).
    func launch() throws(LaunchError) -> (channel: WorkerChannel, forked: Forked) {
        try connect(scan: false)
    }

    /// Tells the fork server the host is done with a worker whose socket
    /// reached its end: it may reap it (its pid may be reused from then on).
    /// Not answered, so it costs a restart one send and no round trip.
    func release(_ forked: Forked) {
        lock.lock()
        defer { lock.unlock() }
        guard let control, forked.server == serverNumber else { return }
        switch control.send(.release(pid: forked.pid), until: .now + Self.answerTimeout) {
        case .sent: break
        case .timedOut: replaceServerLocked(because: "did not take a worker's release within \(Self.answerTimeout.milliseconds) ms")
        case .tooLarge, .failed: replaceServerLocked(because: "is gone (its control socket is closed)")
        }
    }

    /// Has the fork server fork a worker or a scan on a new socket pair; our end of it.
    private func connect(scan: Bool) throws(LaunchError) -> (channel: WorkerChannel, forked: Forked) {
        let host: WorkerChannel
        let child: WorkerChannel
        do {
            (host, child) = try WorkerChannel.pair()
        } catch {
            throw LaunchError(description: "cannot make a socket for the \(scan ? "scan" : "worker"): \(error)")
        }
        let forked = try spawn(with: child, scan: scan)
        // The fork server and the child have their copies; closing ours means an
        // end of file on `host` as soon as the child is gone.
        child.close()
        return (host, forked)
    }

    /// A worker or scan process, and which fork server forked it (they are
    /// numbered from 1 as they start), so that one whose server was replaced
    /// is not reaped through another.
    struct Forked: Sendable, Equatable {
        let pid: pid_t
        let server: Int
    }

    /// The deadline of an answer asked for now: ``answerTimeout``, or, for
    /// a new server's first answer on a loaded machine, until
    /// ``Limits/defaultScanTimeout`` after it was spawned.
    private func answerDeadlineLocked() -> ContinuousClock.Instant {
        let deadline = ContinuousClock.now + Self.answerTimeout
        return serverStarting.map { max(deadline, $0 + Limits.defaultScanTimeout) } ?? deadline
    }

    /// Collects the exit status of a worker whose socket has closed (after
    /// killing it, if need be). Each worker must be reaped exactly once.
    func reap(_ forked: Forked) -> ExitStatus {
        lock.lock()
        defer { lock.unlock() }
        // Its workers died with a replaced server (PR_SET_PDEATHSIG): that is
        // their real end; their zombies went to init with the server's death.
        if let why = replacements[forked.server] { return ExitStatus(.killedWithForkServer(why)) }
        guard let control, forked.server == serverNumber else { return ExitStatus(.unknown) }
        let asked = ContinuousClock.now
        let deadline = answerDeadlineLocked()
        let sent = control.send(.reap(pid: forked.pid), until: deadline)
        let answer: WorkerChannel.Received = switch sent {
        case .sent: control.receive(until: deadline)
        case .timedOut: .timedOut
        case .tooLarge, .failed: .endOfFile
        }
        guard case .message(.reaped(let status)) = answer else {
            let reason = switch answer {
            case .timedOut: "did not answer a request to reap worker \(forked.pid) within \((deadline - asked).milliseconds) ms"
            case .malformed(let what): "sent \(what) for a request to reap worker \(forked.pid)"
            case .message(let other): "answered \(other) to a request to reap worker \(forked.pid)"
            case .endOfFile, .woken: "is gone (its control socket is closed)"
            }
            replaceServerLocked(because: reason)
            return ExitStatus(.killedWithForkServer(replacements[forked.server] ?? "was replaced"))
        }
        return status
    }

    /// A throwaway scan process (see ``ScanProcess``), connected; reap it like a worker.
    func launchScan() throws(LaunchError) -> (channel: WorkerChannel, forked: Forked) {
        try connect(scan: true)
    }

    private func spawn(with worker: WorkerChannel, scan: Bool) throws(LaunchError) -> Forked {
        lock.lock()
        defer { lock.unlock() }
        for _ in 1...2 {
            let control = try serverControlLocked()
            let sent = (try? control.send(scan ? .spawnScan : .spawnWorker, passing: worker.descriptor)) != nil
            let asked = ContinuousClock.now
            let deadline = answerDeadlineLocked()
            if sent, case .message(let answer) = control.receive(until: deadline) {
                serverStarting = nil
                guard case .spawned(let pid) = answer, pid > 0 else {
                    // The server is fine; the system would not fork (out of processes or memory)
                    // or give it a descriptor to watch the worker with.
                    let why = if case .spawned(let pid) = answer, pid < 0 { ": \(Errno(-pid))" } else { "" }
                    throw LaunchError(description: "the fork server could not fork a \(scan ? "scan process" : "worker")\(why)")
                }
                return Forked(pid: pid, server: serverNumber)
            }
            // The fork server is gone or stuck: end it and start a new one, once.
            replaceServerLocked(because: sent ? "did not answer a request for a worker within \((deadline - asked).milliseconds) ms"
                                              : "is gone (its control socket is closed)")
        }
        throw LaunchError(description: "the fork server could not start a worker")
    }

    private func replaceServerLocked(because reason: String) {
        control?.close()
        control = nil
        if serverPID > 0 {
            // Killed first: a stopped server would never see its socket close.
            kill(serverPID, SIGKILL)
            let status = ExitStatus.reap(serverPID)
            logger.error("the fork server (pid \(serverPID)) \(reason), \(status); a new one is started for the next worker")
            replacements[serverNumber] = "(pid \(serverPID)) \(reason) and was replaced"
        }
        serverPID = 0
    }

    private func serverControlLocked() throws(LaunchError) -> WorkerChannel {
        if let control { return control }
        // No new fork server once the host shuts down (a reload still scanning, say).
        guard !isShutDown else { throw LaunchError(description: "the host is shutting down") }
        let host: WorkerChannel
        let server: WorkerChannel
        do {
            (host, server) = try WorkerChannel.pair()
        } catch {
            throw LaunchError(description: "cannot make the fork server's socket: \(error)")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto a different number clears close-on-exec; the server end is never 3 itself.
        let source = server.descriptor == ForkServer.controlDescriptor ? fcntl(server.descriptor, F_DUPFD_CLOEXEC, 10) : server.descriptor
        posix_spawn_file_actions_adddup2(&actions, source, ForkServer.controlDescriptor)
        // Nothing else the host has open, close-on-exec or not, reaches the server.
        _ = cprocess_spawn_close_from(&actions, ForkServer.controlDescriptor + 1)
        // Whatever the spawning thread blocks or ignores, the server starts as a normal process.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        _ = cprocess_spawnattr_reset_signals(&attributes)
        let arguments = [executable, ForkServer.argument]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, &argv, environ)
        if source != server.descriptor { close(source) }
        server.close()
        guard result == 0 else {
            throw LaunchError(description: "cannot start the fork server \(executable): \(Errno(result))")
        }
        serverPID = pid
        serverStarting = .now
        serverNumber += 1
        control = host
        return host
    }

    /// Whether ``shutdown()`` was called: a child that ends now may have been ended by it.
    var hasShutDown: Bool { lock.withLock { isShutDown } }

    /// The fork server's pid, once it runs.
    var serverProcess: pid_t? { lock.withLock { serverPID > 0 ? serverPID : nil } }

    /// Ends the fork server: it exits when its control socket closes.
    func shutdown() {
        let pid: pid_t = lock.withLock {
            isShutDown = true
            control?.close()
            control = nil
            defer { serverPID = 0 }
            return serverPID
        }
        guard pid > 0 else { return }
        // It exits when its socket closes, unless it is stopped or stuck: then it is killed.
        let exited = cprocess_pidfd_open(pid)
        if exited >= 0 {
            if !ExitStatus.exited(pidfd: exited, by: .now + Self.answerTimeout) {
                logger.error("the fork server (pid \(pid)) did not exit within \(Self.answerTimeout.milliseconds) ms of the host's shutdown; killed")
                kill(pid, SIGKILL)
            }
            close(exited)
        }
        _ = ExitStatus.reap(pid)
    }

    deinit { shutdown() }
}
