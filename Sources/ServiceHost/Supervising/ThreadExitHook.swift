#if canImport(Glibc)
import Glibc
#endif

/// Notices a thread that ends without returning from its body: a plugin
/// that called `pthread_exit` in one of its calls. A thread-specific value
/// is set when the body starts and cleared when it returns; glibc runs its
/// destructor only if the thread ends with the value still set.
final class ThreadExitHook: @unchecked Sendable {
    private let onExit: () -> Void
    private static let key: pthread_key_t? = {
        var key = pthread_key_t()
        let created = pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<ThreadExitHook>.fromOpaque(pointer).takeRetainedValue().onExit()
        }
        return created == 0 ? key : nil
    }()

    private init(onExit: @escaping () -> Void) { self.onExit = onExit }

    /// Arms the hook on the calling thread; call ``disarm()`` when the body returns.
    static func arm(onExit: @escaping () -> Void) {
        guard let key else { return }
        pthread_setspecific(key, Unmanaged.passRetained(ThreadExitHook(onExit: onExit)).toOpaque())
    }

    /// The body returned normally.
    static func disarm() {
        guard let key, let pointer = pthread_getspecific(key) else { return }
        pthread_setspecific(key, nil)
        Unmanaged<ThreadExitHook>.fromOpaque(pointer).release()
    }
}
