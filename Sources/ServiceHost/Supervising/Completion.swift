import Foundation

/// A one-shot event that async code or a thread can wait for, with or
/// without a deadline, and any thread can signal.
final class Completion: @unchecked Sendable {
    private let condition = NSCondition()
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

    var isComplete: Bool {
        condition.lock()
        defer { condition.unlock() }
        return done
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
            // Set only once the waiter is registered, so it cannot fire unseen.
            // A Dispatch timer, not Task.sleep: a stop timeout must fire even
            // when the program has every thread of Swift's cooperative pool blocked.
            if let timeout {
                DispatchQueue.global().asyncAfter(deadline: .now() + timeout.seconds) { [weak self] in
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
        let deadline = timeout.map { Date(timeIntervalSinceNow: $0.seconds) } ?? .distantFuture
        condition.lock()
        defer { condition.unlock() }
        while !done {
            if !condition.wait(until: deadline) { return done }
        }
        return true
    }
}
