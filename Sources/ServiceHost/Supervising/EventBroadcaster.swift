import Foundation
import Synchronization

/// Hands every ``ServiceEvent`` to each current subscriber.
///
/// With no subscriber, publishing is one atomic load, so the restart path pays
/// nothing for events nobody reads.
final class EventBroadcaster: @unchecked Sendable {
    /// Events a slow subscriber may fall behind by before the oldest are dropped.
    static let bufferLimit = 10_000

    private let lock = NSLock()
    private var subscribers: [Int: AsyncStream<ServiceEvent>.Continuation] = [:]
    private var nextIdentifier = 0
    private let subscriberCount = Atomic<Int>(0)

    func subscribe() -> AsyncStream<ServiceEvent> {
        AsyncStream(bufferingPolicy: .bufferingNewest(Self.bufferLimit)) { continuation in
            let identifier: Int = lock.withLock {
                nextIdentifier += 1
                subscribers[nextIdentifier] = continuation
                subscriberCount.store(subscribers.count, ordering: .releasing)
                return nextIdentifier
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
        guard subscriberCount.load(ordering: .acquiring) > 0 else { return }
        lock.withLock {
            for subscriber in subscribers.values { subscriber.yield(event) }
        }
    }

    func finish() {
        let ended = lock.withLock {
            defer { subscribers = [:] }
            return Array(subscribers.values)
        }
        for subscriber in ended { subscriber.finish() }
    }
}
