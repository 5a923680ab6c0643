import CThreadShims

#if canImport(Glibc)
import Glibc
#endif

/// The one place where the host creates threads: each is named from inside,
/// so `ps -T` and `top -H` show the name (`svc:NAME` for a service, cut to
/// the kernel's 15 bytes), and starts with an empty signal mask, so plugin
/// code on it receives signals as in any normal process instead of inheriting
/// the almost-full mask of the libdispatch worker that happened to start it.
public enum HostThread {
    /// Why a thread could not be created.
    public struct SpawnError: Error, CustomStringConvertible, Sendable {
        public let name: String
        public let errorNumber: Int32
        public var description: String {
            "cannot create the thread '\(name)': \(String(cString: strerror(errorNumber)))"
        }
    }

    /// The name a service's thread carries.
    static func name(forService service: String) -> String { "svc:\(service)" }

    /// Starts a thread named `name` that runs `body`; nobody joins it (its
    /// stack is reused once it has ended: see CHostThread.c).
    public static func spawn(name: String, _ body: @escaping @Sendable () -> Void) throws(SpawnError) {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        let result = name.withCString { cName in
            cthread_spawn(cName, 1, { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
            }, box)
        }
        if result != 0 {
            Unmanaged<Body>.fromOpaque(box).release()
            throw SpawnError(name: name, errorNumber: result)
        }
    }

    /// The calling thread's stack (lowest address and size), as the thread
    /// library knows it; `nil` if it cannot say.
    static var currentStack: (low: UnsafeMutableRawPointer, size: Int)? {
        var low: UnsafeMutableRawPointer?
        var size = 0
        guard cthread_current_stack(&low, &size) == 0, let low else { return nil }
        return (low, size)
    }

    /// The calling thread's kernel id, as in `/proc/self/task/<tid>`.
    public static var currentID: Int32 { cthread_gettid() }

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}
