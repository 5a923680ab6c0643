import Foundation

/// Runs actions at deadlines on a thread of its own.
///
/// For the host's timeouts (a stop that must not wait past its timeout):
/// neither Swift's cooperative pool nor Dispatch's global queues can be
/// relied on to have a free thread when a program blocks them, and a
/// timeout that fires late is a hang. Timeouts are rare, so one thread that
/// sleeps until the earliest one, and without a timeout when there is none, costs nothing.
final class DeadlineTimer: @unchecked Sendable {
    static let shared = DeadlineTimer()

    private struct Entry {
        let deadline: ContinuousClock.Instant
        let action: @Sendable () -> Void
    }

    private let condition = MonotonicCondition()
    /// Sorted by deadline, earliest first.
    private var entries: [Entry] = []
    private var started = false

    func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) {
        let entry = Entry(deadline: .now + delay, action: action)
        condition.lock()
        let index = entries.firstIndex { $0.deadline > entry.deadline } ?? entries.count
        entries.insert(entry, at: index)
        if !started {
            started = true
            do {
                try HostThread.spawn(name: "host:timer") { [self] in run() }
            } catch {
                started = false  // tried again on the next call
            }
        }
        condition.signal()
        condition.unlock()
    }

    private func run() {
        condition.lock()
        while true {
            guard let first = entries.first else {
                condition.wait()
                continue
            }
            if first.deadline > .now {
                condition.wait(until: first.deadline)
                continue
            }
            entries.removeFirst()
            condition.unlock()
            first.action()
            condition.lock()
        }
    }
}
