import CThreadShims

#if canImport(Glibc)
import Glibc
#endif

/// How the host receives signals: real handlers that write the signal's
/// number to a pipe, read by a host thread and delivered as an async stream.
///
/// Unlike `SIG_IGN` plus a dispatch source, handlers are reset to the default
/// across `exec`, so programs a plugin starts see default dispositions, and no
/// thread has to block the signals. A plugin in thread isolation may replace a
/// handler; ``reassert()`` (called after every `svc_create`) puts them back.
public enum HostSignals {
    /// Installs handlers for `signals` and returns the stream of their arrivals.
    /// Call once per process. SIGPIPE, if not among them, gets a handler that
    /// does nothing, so a write to a closed pipe fails with EPIPE instead of
    /// killing the host, and children still start with SIGPIPE's default.
    public static func install(_ signals: [Int32]) -> AsyncStream<Int32> {
        let readEnd = csignal_open_pipe()
        guard readEnd >= 0 else {
            fatalError("cannot create the signal pipe: \(String(cString: strerror(errno)))")
        }
        var continuation: AsyncStream<Int32>.Continuation!
        let stream = AsyncStream<Int32> { continuation = $0 }
        let yield = continuation!
        do {
            try HostThread.spawn(name: "host:signals") {
                var byte: UInt8 = 0
                while true {
                    let count = read(readEnd, &byte, 1)
                    if count == 1 {
                        yield.yield(Int32(byte))
                    } else if count < 0 && errno == EINTR {
                        continue
                    } else {
                        yield.finish()
                        return
                    }
                }
            }
        } catch {
            fatalError("\(error)")
        }
        for number in signals {
            csignal_install(number)
        }
        if !signals.contains(SIGPIPE) {
            csignal_install_noop(SIGPIPE)
        }
        return stream
    }

    /// Installs again the handlers that plugin code replaced; returns how many.
    /// A few system calls, and nothing when ``install(_:)`` was never called.
    @discardableResult
    public static func reassert() -> Int {
        Int(csignal_reassert())
    }
}
