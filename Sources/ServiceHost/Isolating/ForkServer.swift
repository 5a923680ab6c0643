import CProcessControl
import Foundation

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
/// Each worker is forked twice, the middle process exiting at once, so that
/// the worker is adopted by the host (a child subreaper): the host can then
/// `waitpid` and `kill` it directly, with no pid reuse race.
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
        closeInheritedDescriptors(above: controlDescriptor)
        // Out of the terminal's process group: a Ctrl-C must reach the host,
        // which stops each service properly, and not its workers directly.
        setpgid(0, 0)
        signal(SIGPIPE, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        while let channel = control.receiveDescriptor() {
            let middle = fork()
            if middle == 0 {
                let worker = fork()
                if worker == 0 {
                    control.close()
                    signal(SIGINT, SIG_DFL)
                    WorkerProcess.run(channel: WorkerChannel(descriptor: channel))
                }
                _exit(worker < 0 ? 1 : 0)
            }
            close(channel)
            if middle > 0 {
                var status: Int32 = 0
                while waitpid(middle, &status, 0) < 0 && errno == EINTR {}
            }
        }
        // The host closed the control socket: it is gone or shutting down.
        _exit(0)
    }
}

extension ForkServer {
    static func closeInheritedDescriptors(above lowest: Int32) {
        let listed = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for descriptor in listed.compactMap({ Int32($0) }) where descriptor > lowest {
            close(descriptor)
        }
    }
}

/// The host's side of the fork server: starts it on first use and asks it
/// for workers.
final class WorkerLauncher: @unchecked Sendable {
    let executable: String
    private let lock = NSLock()
    private var control: WorkerChannel?
    private var serverPID: pid_t = 0

    init(executable: String) {
        self.executable = executable
    }

    struct LaunchError: Error, CustomStringConvertible {
        let description: String
    }

    /// A new worker process, connected, with its pid known.
    func launch() throws(LaunchError) -> (channel: WorkerChannel, pid: pid_t) {
        let host: WorkerChannel
        let worker: WorkerChannel
        do {
            (host, worker) = try WorkerChannel.pair()
        } catch {
            throw LaunchError(description: "cannot make a socket for the worker: \(error)")
        }
        defer { worker.close() }
        try requestWorker(on: worker.descriptor)
        // The fork server has its own copy now; closing ours means an end of
        // file on `host` if the worker dies before it says hello.
        worker.close()
        switch host.receive(until: .now + .seconds(10)) {
        case .message(.hello(let pid)):
            return (host, pid)
        default:
            throw LaunchError(description: "the worker process did not start")
        }
    }

    /// Hands the worker's end of its socket to the fork server, which forks the worker.
    private func requestWorker(on descriptor: Int32) throws(LaunchError) {
        lock.lock()
        defer { lock.unlock() }
        do {
            try serverControlLocked().send(descriptor: descriptor)
        } catch {
            // The fork server died; start a new one, once.
            control = nil
            do {
                try serverControlLocked().send(descriptor: descriptor)
            } catch {
                throw LaunchError(description: "the fork server does not answer: \(error)")
            }
        }
    }

    private func serverControlLocked() throws(LaunchError) -> WorkerChannel {
        if let control { return control }
        // Orphaned workers (whose middle process exited) are adopted by the
        // host, so it can reap them and read their exit status.
        _ = cprocess_become_subreaper()
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
        let arguments = [executable, ForkServer.argument]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, &argv, environ)
        if source != server.descriptor { close(source) }
        server.close()
        guard result == 0 else {
            throw LaunchError(description: "cannot start the fork server \(executable): \(Errno(result))")
        }
        serverPID = pid
        control = host
        return host
    }

    /// Ends the fork server: it exits when its control socket closes.
    func shutdown() {
        let pid: pid_t = lock.withLock {
            control?.close()
            control = nil
            defer { serverPID = 0 }
            return serverPID
        }
        if pid > 0 { _ = ExitStatus.reap(pid) }
    }

    deinit { shutdown() }
}
