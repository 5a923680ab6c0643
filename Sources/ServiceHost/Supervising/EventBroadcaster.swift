import Foundation
import Synchronization

/// Hands every ``ServiceEvent`` to each current subscriber.
///
/// Keeps the last ``historyLimit`` events, so that a subscriber gets what
/// happened before it subscribed; publishing costs one uncontended lock.
final class EventBroadcaster: @unchecked Sendable {
    /// Events a slow subscriber may fall behind by before the oldest are dropped.
    static let bufferLimit = 10_000

    private let lock = NSLock()
    private var subscribers: [Int: AsyncStream<ServiceEvent>.Continuation] = [:]
    private var nextIdentifier = 0
    private let subscriberCount = Atomic<Int>(0)
    /// Set once the scheduler shut down: a later subscriber's stream ends at once.
    private var finished = false
    /// The most recent events, oldest first, which a new subscriber gets
    /// first: one that subscribes after `startAll()` still sees the first starts.
    private var history: [ServiceEvent] = []
    private var historyStart = 0
    /// How many past events a new subscriber is given.
    static let historyLimit = 1_000

    func subscribe() -> AsyncStream<ServiceEvent> {
        AsyncStream(bufferingPolicy: .bufferingNewest(Self.bufferLimit)) { continuation in
            let identifier: Int? = lock.withLock {
                // Under the lock, so that no event is given twice or missed between the replay and the live ones.
                for event in history[historyStart...] + history[..<historyStart] { continuation.yield(event) }
                guard !finished else { return nil }
                nextIdentifier += 1
                subscribers[nextIdentifier] = continuation
                subscriberCount.store(subscribers.count, ordering: .releasing)
                return nextIdentifier
            }
            guard let identifier else {
                continuation.finish()
                return
            }
            continuation.onTermination = { [weak self] _ in
                guard let self else { return }
                lock.withLock {
                    subscribers[identifier] = nil
                    subscriberCount.store(subscribers.count, ordering: .releasing)
                }
            }
        }
    }

    func publish(_ event: ServiceEvent) {
        lock.withLock {
            if history.count < Self.historyLimit {
                history.append(event)
            } else {
                history[historyStart] = event
                historyStart = (historyStart + 1) % Self.historyLimit
            }
            for subscriber in subscribers.values { subscriber.yield(event) }
        }
    }

    func finish() {
        let ended = lock.withLock {
            finished = true
            subscriberCount.store(0, ordering: .releasing)
            defer { subscribers = [:] }
            return Array(subscribers.values)
        }
        for subscriber in ended { subscriber.finish() }
    }
}
