import Dispatch
import Synchronization
import Testing

@testable import ServiceHost

/// Staging ahead: every item is prepared exactly once, by a helper or by
/// the caller, and the caller gets each one in order.
@Suite("Prefetcher")
struct PrefetcherTests {
    /// Counts how often each index was prepared, and on which side.
    private final class Tally: Sendable {
        let preparations = Mutex<[Int: Int]>([:])
        func prepared(_ index: Int) -> String {
            preparations.withLock { $0[index, default: 0] += 1 }
            return "item \(index)"
        }
    }

    @Test(arguments: [0, 1, 3])
    func everyItemIsPreparedOnceAndTakenInOrder(helpers: Int) {
        let tally = Tally()
        let count = 500
        let prefetcher = Prefetcher(count: count, helpers: helpers) { tally.prepared($0) }
        let taken = (0..<count).map { prefetcher.take($0) }
        #expect(taken == (0..<count).map { "item \($0)" })
        // Helpers may still be finishing an item nobody waits for; each ran at most once.
        let preparations = tally.preparations.withLock { $0 }
        #expect(preparations.count == count)
        #expect(preparations.values.allSatisfy { $0 == 1 }, "\(preparations.filter { $0.value != 1 })")
    }

    /// Without helpers, the caller prepares each item as it takes it.
    @Test func withoutHelpersTheCallerPreparesEachItemWhenItTakesIt() {
        let tally = Tally()
        let prefetcher = Prefetcher(count: 3, helpers: 0) { tally.prepared($0) }
        #expect(tally.preparations.withLock { $0.isEmpty })
        #expect(prefetcher.take(0) == "item 0")
        #expect(tally.preparations.withLock { $0 } == [0: 1])
    }

    /// After a cancel, nothing more is prepared ahead; what the caller still
    /// takes it prepares itself.
    @Test func aCancelledPrefetcherPreparesNothingMoreAhead() {
        let tally = Tally()
        // Past the first ten, a helper's preparation waits for the cancel: a
        // caller descheduled on a loaded machine could otherwise find all
        // 10,000 prepared before it cancels (seen once).
        let cancelled = DispatchSemaphore(value: 0)
        let prefetcher = Prefetcher(count: 10_000, helpers: 2) { index in
            if index >= 10 { cancelled.wait() }
            return tally.prepared(index)
        }
        #expect(prefetcher.take(0) == "item 0")
        prefetcher.cancel()
        let settled = tally.preparations.withLock { $0.count }
        #expect(settled <= 10)
        for _ in 0..<3 { cancelled.signal() }
        // At most the two items the helpers had claimed when cancelled are added later.
        #expect(prefetcher.take(1) == "item 1")
        #expect(tally.preparations.withLock { $0.count } <= settled + 3)
    }
}
