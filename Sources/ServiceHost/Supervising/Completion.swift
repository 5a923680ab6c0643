import Foundation

/// A one-shot event that async code or a thread can wait for, with or
/// without a deadline, and any thread can signal.
final class Completion: @unchecked Sendable {
    private let condition = MonotonicCondition()
    private var done = false
    private var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
    private var nextWaiter: UInt64 = 0

    func complete() {
        condition.lock()
        done = true
        let resumed = waiters.values
        waiters = [:]
        condition.broadcast()
        condition.unlock()
        for waiter in resumed { waiter.resume(returning: true) }
    }

    func wait() async {
        _ = await wait(timeout: nil)
    }

    /// Waits until completed or `timeout` has passed; returns whether it completed.
    func wait(timeout: Duration?) async -> Bool {
        let identifier: UInt64 = condition.withLock {
            nextWaiter += 1
            return nextWaiter
        }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            condition.lock()
            if done {
                condition.unlock()
                continuation.resume(returning: true)
                return
            }
            waiters[identifier] = continuation
            condition.unlock()
            // Set only once the waiter is registered, so it cannot fire unseen;
            // on the timer's own thread, so it fires even when the program
            // keeps every pooled thread busy.
            if let timeout {
                DeadlineTimer.shared.schedule(after: timeout) { [weak self] in
                    self?.expire(identifier)
                }
            }
        }
    }

    private func expire(_ identifier: UInt64) {
        let expired: CheckedContinuation<Bool, Never>? = condition.withLock { waiters.removeValue(forKey: identifier) }
        expired?.resume(returning: false)
    }

    /// Blocks the calling thread until completed or `timeout` has passed.
    func waitBlocking(timeout: Duration? = nil) -> Bool {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        condition.lock()
        defer { condition.unlock() }
        while !done {
            if let deadline {
                if !condition.wait(until: deadline), deadline <= .now { return done }
            } else {
                condition.wait()
            }
        }
        return true
    }
}
