import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How a worker process ended, from `waitpid`'s status, in words an operator reads.
struct ExitStatus: Sendable, Equatable, CustomStringConvertible {
    enum Ending: Sendable, Equatable {
        case exited(Int32)
        case killed(Int32)
        /// The status could not be collected (someone else reaped the process).
        case unknown
        /// Its socket was closed under it (by the plugin); it exited or the host killed it.
        case closedItsConnection
        /// Its fork server was replaced (the reason), and it died with it
        /// (`PR_SET_PDEATHSIG`); the server that could have reaped it is gone.
        case killedWithForkServer(String)
        /// The host killed it and it did not die (stuck in the kernel); not reaped.
        case survivedKill
    }

    let ending: Ending

    init(waitStatus status: Int32) {
        // WIFEXITED, WEXITSTATUS, WTERMSIG are macros Swift cannot import.
        let signal = status & 0x7f
        ending = signal == 0 ? .exited((status >> 8) & 0xff) : .killed(signal)
    }

    init(_ ending: Ending) { self.ending = ending }

    /// The code recorded in the service's errors: the exit status, or 128 plus
    /// the signal number, as shells report them.
    var code: Int32 {
        switch ending {
        case .exited(let status): status
        case .killed(let signal): 128 + signal
        case .killedWithForkServer: 128 + SIGKILL
        case .unknown, .closedItsConnection, .survivedKill: -1
        }
    }

    var description: String {
        switch ending {
        case .exited(let status): "exited with status \(status)"
        case .killed(let signal): "killed by \(Self.name(of: signal))"
        case .unknown: "exited (status unknown)"
        case .closedItsConnection: "lost its connection to the host (the plugin closed the worker's socket)"
        case .killedWithForkServer(let why): "was killed with its fork server, which \(why)"
        case .survivedKill: "was killed by the host and did not die within stop_timeout_ms (stuck in the kernel)"
        }
    }

    static func name(of signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
            SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
            SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
            SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS",
        ]
        return names[signal] ?? "signal \(signal)"
    }

    /// Whether the process of `pidfd` exited by `deadline` (it is not reaped).
    static func exited(pidfd: Int32, by deadline: ContinuousClock.Instant) -> Bool {
        while true {
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            let left = deadline - ContinuousClock.now
            let ready = poll(&fds, 1, left <= .zero ? 0 : Int32(clamping: left.milliseconds + 1))
            if ready > 0 { return true }
            if ready < 0, errno == EINTR { continue }
            if ready < 0 || ContinuousClock.now >= deadline { return false }
        }
    }

    /// Waits for `pid` to exit and reaps it.
    static func reap(_ pid: pid_t) -> ExitStatus {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, 0)
            if result == pid { return ExitStatus(waitStatus: status) }
            if result < 0, errno == EINTR { continue }
            return ExitStatus(.unknown)
        }
    }

    /// Whether `pid` is a zombie: dead, not reaped yet. Read from
    /// `/proc/PID/stat` (the state follows the last `)`: the command name may
    /// hold any character); false if it cannot be read.
    static func isZombie(_ pid: pid_t) -> Bool {
        let descriptor = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 512)
        let count = read(descriptor, &bytes, bytes.count)
        guard count > 0, let close = bytes[..<count].lastIndex(of: UInt8(ascii: ")")), close + 2 < count,
              bytes[close + 2] == UInt8(ascii: "Z") else { return false }
        // A leader whose other threads still run shows as a zombie too: the
        // process is dead only once its task list holds the leader alone.
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.count <= 1
    }
}
