#if canImport(Glibc)
import Glibc
#endif

/// A mutex and condition variable whose timed waits run on the monotonic
/// clock. Foundation's NSCondition takes its deadlines as a `Date`, on the wall clock, so
/// setting the system time back (NTP, an operator, a VM resumed) would
/// stretch every stop, start and watchdog timeout by as much.
final class MonotonicCondition: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    /// The clock the timed waits use, read back from the condition's attributes.
    let clock: clockid_t

    init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, clockid_t(CLOCK_MONOTONIC))
        var chosen = clockid_t(0)
        pthread_condattr_getclock(&attributes, &chosen)
        clock = chosen
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        lock()
        defer { unlock() }
        return try body()
    }

    func signal() { pthread_cond_signal(condition) }
    func broadcast() { pthread_cond_broadcast(condition) }

    /// Waits, with the lock held, until signalled.
    func wait() { pthread_cond_wait(condition, mutex) }

    /// Waits, with the lock held, until signalled or `deadline` has passed.
    /// Returns `false` once the deadline has passed (callers re-check their
    /// predicate either way: wakeups may be spurious).
    @discardableResult
    func wait(until deadline: ContinuousClock.Instant) -> Bool {
        // At most a day per wait, so that no far deadline overflows the
        // nanosecond arithmetic; callers loop until their deadline anyway.
        let left = min(deadline - .now, .seconds(86_400))
        guard left > .zero else { return false }
        var now = timespec()
        clock_gettime(clock, &now)
        let end = now.nanoseconds + left.nanoseconds
        var target = timespec(tv_sec: Int(end / 1_000_000_000), tv_nsec: Int(end % 1_000_000_000))
        return pthread_cond_timedwait(condition, mutex, &target) != ETIMEDOUT
    }
}
