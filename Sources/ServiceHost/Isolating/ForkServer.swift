import CProcessShims
import Foundation
import Synchronization
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The process that makes worker processes: a copy of the `servicehost`
/// executable started once, which forks a worker per request.
///
/// Starting a worker by executing a Swift binary costs several
/// milliseconds (the runtime and Foundation load and relocate every time);
/// forking a process that already has them costs a fraction of that. The
/// fork server is started while it is still single-threaded and stays so,
/// which is what makes forking it safe: no other thread can be holding a lock
/// the child would inherit.
///
/// It also watches its workers die, so that the host holds nothing per
/// worker but the worker's socket: it keeps a pidfd of each worker and a
/// copy of the worker's end of its socket. When a worker dies, the server
/// reads its exit status without reaping it, writes it on that socket as the
/// worker's last message (``WorkerMessage/reaped(_:)``) and shuts the socket
/// down, which the host reads as the end of file even when a process the
/// plugin forked still holds the socket. The worker stays a zombie until the
/// host says it is done with it (``WorkerMessage/release(pid:)``), so its pid
/// cannot be reused while the host might still signal it; and the host
/// never has to reap processes it did not start (which would steal other
/// code's children).
public enum ForkServer {
    /// The first argument that makes `servicehost` a fork server instead of a command.
    public static let argument = "__fork-server"
    /// The descriptor the control socket arrives on.
    static let controlDescriptor: Int32 = 3

    /// Runs the fork server when the process was started as one; returns
    /// otherwise. Call it first thing in `main`, before anything starts a thread.
    public static func runIfRequested(arguments: [String] = CommandLine.arguments) {
        guard arguments.count > 1, arguments[1] == argument else { return }
        serve(control: WorkerChannel(descriptor: controlDescriptor))
    }

    private static func serve(control: WorkerChannel) -> Never {
        // The host may have had descriptors open without close-on-exec (a
        // pipe to another child, say); held here, they would keep that pipe
        // from ever reaching its end. Only the standard ones and the control socket stay.
        cprocess_close_from(controlDescriptor + 1)
        // Out of the terminal's process group: a Ctrl-C must reach the host,
        // which stops each service properly, and not its workers directly.
        setpgid(0, 0)
        signal(SIGPIPE, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        // Two descriptors per worker (its pidfd and socket) are held here.
        HostLimits.raiseDescriptorLimit(logger: nil)
        warmUp()
        var children = ForkServerChildren(control: control)
        children.run()
        // The host closed the control socket: it is gone or shutting down.
        // Whatever still runs in this process group (a worker inside a
        // slow constructor, which reads nothing from its socket yet, or
        // a program a plugin started) must not outlive its host.
        kill(0, SIGKILL)
        _exit(0)
    }

    /// Does once, here, what every worker would otherwise do first, so that
    /// what it writes is shared by every fork instead of copied into each:
    /// libffi maps its closure trampolines on the first allocation (a closure
    /// freed here leaves them mapped), and the Swift runtime fills its
    /// metadata and conformance caches on first use of each type.
    private static func warmUp() {
        final class Quiet: HostCallbackTarget {
            func pluginLog(level: Int32, message: String) {}
            func pluginRequestedStop() {}
            func pluginAsksWhetherToStop(handingOver: Bool) -> Bool { false }
            func pluginAsksForStopDescriptor(slot: Int) -> Int32 { -1 }
        }
        let target = Quiet()
        // As a worker makes it: with the kept-state and kept-descriptor callbacks.
        _ = HostBinding(serviceName: "", settings: [:], target: target, offersState: true)
        _ = StopSignal()
        // The collections a worker's service keeps its descriptors' names in.
        let names = Mutex(Set(["warm-up"]))
        _ = names.withLock { $0.insert("other").inserted }
        _ = KeptState.Refusals().isFirst(-ENOSPC)
        var descriptors: [String: Int32] = [:]
        descriptors["warm-up"] = -1
        let assignment = WorkerMessage.start(WorkerAssignment(
            name: "warm-up", file: "/", privateCopy: "/", containsSwiftCode: false, interval: .seconds(1),
            watchdog: .seconds(1), startTimeout: .seconds(1), settings: ["key": "value"]))
        for message in [assignment, .keptDescriptor(name: "warm-up"), .keptState(size: 0), .loading, .loaded(version: "1"), .created,
                        .alive(loops: 1), .log(level: 3, message: "warm-up"), .stateSaved(size: 1),
                        .descriptorKept(name: "warm-up", present: true), .stopped(WorkerStopReport(kind: .finished))] {
            _ = message.encoded().withUnsafeBytes { WorkerMessage(decoding: $0) }
        }
        // One run of the event loop every worker goes through (no thread:
        // the worker runs it on its main thread too).
        final class Rehearsal: BaseService, @unchecked Sendable {
            override func onLoop() -> LoopOutcome { .done }
        }
        let rehearsal = Rehearsal(name: "warm-up", configuration: ServiceConfiguration(
            interval: .milliseconds(1), watchdog: nil, startTimeout: nil, settings: ["key": "value"]), loopCounter: LoopCounter())
        if (try? rehearsal.start()) == .some(nil) {
            _ = rehearsal.runEventLoop()
            try? rehearsal.stop()
        }
    }
}

/// The fork server's children and its one loop: requests from the host on
/// the control socket, and the deaths of its workers (their pidfds), both
/// through one epoll set, on the server's only thread.
private struct ForkServerChildren {
    /// A worker (or the spare, which has no socket yet) the server watches.
    private struct Watched {
        let pidfd: Int32
        /// The server's copy of the worker's end of its socket; -1 for the spare.
        var socket: Int32
    }

    private let control: WorkerChannel
    private let epoll: Int32
    private var watched: [pid_t: Watched] = [:]
    /// Dead workers the host has not released yet: zombies, waiting.
    private var unreleased: Set<pid_t> = []
    /// Live workers the host released already (it gave up on one it killed): reaped when they die.
    private var released: Set<pid_t> = []
    /// A worker forked ahead of time, waiting for its socket on `link`, so that a
    /// restart does not wait for a fork; the next is forked after an answer has gone out.
    private var spare: (pid: pid_t, link: WorkerChannel)?
    /// The epoll tag of the control socket; the others are pids, never 0.
    private static let controlTag: UInt64 = 0

    init(control: WorkerChannel) {
        self.control = control
        epoll = cprocess_epoll_create()
        if epoll < 0 || cprocess_epoll_add(epoll, control.descriptor, Self.controlTag) != 0 {
            // Without epoll nothing can be served; the host sees the control socket close and says so.
            _exit(1)
        }
    }

    mutating func run() {
        spare = forkSpare()
        var tags = [UInt64](repeating: 0, count: 64)
        while true {
            let ready = cprocess_epoll_wait(epoll, &tags, Int32(tags.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            for tag in tags.prefix(Int(ready)) {
                if tag == Self.controlTag {
                    // The caller ends the process group, the spare with it.
                    guard serveRequest() else { return }
                } else {
                    died(pid_t(truncatingIfNeeded: tag))
                }
            }
        }
    }

    /// Serves one request; false once the host has closed the control socket.
    private mutating func serveRequest() -> Bool {
        guard let (request, passed) = control.receivePassing() else { return false }
        switch (request, passed) {
        case (.spawnWorker, let channel?):
            control.send(.spawned(pid: spawnWorker(on: channel)))
            if spare == nil { spare = forkSpare() }
        case (.spawnScan, let channel?):
            control.send(.spawned(pid: spawnScan(on: channel)))
            close(channel)
        case (.reap(let pid), _):
            if let passed { close(passed) }
            control.send(.reaped(reap(pid)))
        case (.release(let pid), _):
            if let passed { close(passed) }
            release(pid)
        case (.spawnWorker, nil), (.spawnScan, nil):
            // The socket did not arrive: the kernel drops a passed descriptor
            // that would exceed this process's limit. Answered, so that the
            // host's wait is not taken for a stuck server.
            control.send(.spawned(pid: -EMFILE))
        default:
            // Not a request (or a spawn without its socket): ignored.
            if let passed { close(passed) }
        }
        return true
    }

    /// Hands `channel` to the spare (or forks a worker on it); the worker's
    /// pid, or a negative errno.
    private mutating func spawnWorker(on channel: Int32) -> pid_t {
        if let ready = spare {
            spare = nil
            defer { ready.link.close() }
            if (try? ready.link.send(.spawnWorker, passing: channel)) != nil, watched[ready.pid] != nil {
                watched[ready.pid]?.socket = channel
                return ready.pid
            }
            // It died: forked again below.
        }
        let server = getpid()
        let worker = fork()
        if worker == 0 {
            WorkerProcess.run(channel: WorkerChannel(descriptor: Self.keepOnly(channel)), forkServer: server)
        }
        guard worker > 0 else {
            let error = errno
            close(channel)
            return -error
        }
        guard watch(worker, socket: channel) else {
            let error = errno
            kill(worker, SIGKILL)
            _ = ExitStatus.reap(worker)
            close(channel)
            return -error
        }
        return worker
    }

    private func spawnScan(on channel: Int32) -> pid_t {
        let server = getpid()
        let scanner = fork()
        if scanner == 0 {
            // Like a worker, a scan (maybe inside a constructor that
            // never returns) dies with a fork server that is replaced.
            WorkerProcess.dieWithParent(server)
            signal(SIGINT, SIG_DFL)
            ScanProcess.run(channel: WorkerChannel(descriptor: Self.keepOnly(channel)))
        }
        return scanner > 0 ? scanner : -errno
    }

    /// In a child just forked: closes every descriptor the server holds (the
    /// control socket, the epoll set, other workers' pidfds and sockets) but
    /// `descriptor`, which it moves to the lowest free number above the standard ones.
    private static func keepOnly(_ descriptor: Int32) -> Int32 {
        let kept = ForkServer.controlDescriptor
        if descriptor != kept {
            dup2(descriptor, kept)
            // dup2 clears close-on-exec: a program the plugin executes must not inherit the socket.
            _ = fcntl(kept, F_SETFD, FD_CLOEXEC)
        }
        cprocess_close_from(kept + 1)
        return kept
    }

    /// Starts watching a worker's death; false (errno set) if no pidfd could be had.
    private mutating func watch(_ pid: pid_t, socket: Int32) -> Bool {
        let pidfd = cprocess_pidfd_open(pid)
        guard pidfd >= 0 else { return false }
        guard cprocess_epoll_add(epoll, pidfd, UInt64(pid)) == 0 else {
            let error = errno
            close(pidfd)
            errno = error
            return false
        }
        watched[pid] = Watched(pidfd: pidfd, socket: socket)
        return true
    }

    /// A watched child died: its status goes to the host on its own socket, and
    /// it stays a zombie until the host releases it.
    private mutating func died(_ pid: pid_t) {
        guard let child = watched.removeValue(forKey: pid) else { return }
        close(child.pidfd)  // also leaves the epoll set
        var waitStatus: Int32 = 0
        // Its pidfd is readable: it has exited, or is about to.
        let exited = cprocess_peek_exit(pid, &waitStatus, 1) == 1
        if child.socket >= 0 {
            if exited {
                // A socket whose queue the host left full gets no status: the host asks for it (``reap``).
                _ = WorkerChannel.sendWithoutWaiting(.reaped(ExitStatus(waitStatus: waitStatus)), on: child.socket)
            }
            // An end of file for the host, whoever else holds the socket.
            shutdown(child.socket, Int32(SHUT_RDWR))
            close(child.socket)
        }
        if spare?.pid == pid {
            spare?.link.close()
            spare = nil
            _ = ExitStatus.reap(pid)
        } else if released.remove(pid) != nil || !exited {
            _ = ExitStatus.reap(pid)
        } else {
            unreleased.insert(pid)
        }
    }

    /// The exit status of a child the host found dead; never blocks on a worker
    /// that still runs (a scan is reaped after the host has seen it end).
    private mutating func reap(_ pid: pid_t) -> ExitStatus {
        var waitStatus: Int32 = 0
        if watched[pid] != nil, cprocess_peek_exit(pid, &waitStatus, 0) == 1 {
            // Dead, and its pidfd's turn has not come yet in this loop.
            died(pid)
        }
        if unreleased.remove(pid) != nil || watched[pid] == nil {
            return ExitStatus.reap(pid)
        }
        // Alive still: the host gave up on it; reaped when it dies.
        released.insert(pid)
        return ExitStatus(.unknown)
    }

    private mutating func release(_ pid: pid_t) {
        if unreleased.remove(pid) != nil {
            _ = ExitStatus.reap(pid)
        } else if watched[pid] != nil {
            released.insert(pid)
        }
    }

    /// A forked worker waiting for its socket on `link`; `nil` if fork failed.
    private mutating func forkSpare() -> (pid: pid_t, link: WorkerChannel)? {
        guard let (server, spare) = try? WorkerChannel.pair() else { return nil }
        let forkServer = getpid()
        let pid = fork()
        if pid == 0 {
            let link = WorkerChannel(descriptor: Self.keepOnly(spare.descriptor))
            WorkerProcess.dieWithParent(forkServer)
            guard let (request, passed) = link.receivePassing(), request == .spawnWorker, let channel = passed else { _exit(0) }
            link.close()
            WorkerProcess.run(channel: WorkerChannel(descriptor: channel), forkServer: forkServer)
        }
        spare.close()
        guard pid > 0, watch(pid, socket: -1) else {
            if pid > 0 {
                kill(pid, SIGKILL)
                _ = ExitStatus.reap(pid)
            }
            server.close()
            return nil
        }
        return (pid, server)
    }
}
