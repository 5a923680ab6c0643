import Foundation

/// Prepares items `0..<count` on helper threads ahead of one caller that takes
/// them in order, so that the caller's serial work on item `i` overlaps the
/// preparation of the items after it.
///
/// Adding thousands of plugins is two kinds of work: staging each file
/// (reading, checking, copying, digesting, scanning, its sidecar), which any
/// thread can do, and opening it, which is serial (`dlopen` takes glibc's
/// global loader lock and walks every image already loaded). Done one after
/// the other on one thread, a second core sat idle; here the staging runs
/// ahead on the others.
///
/// An item nobody has claimed yet is prepared by the caller itself, so a
/// helper that could not be started only costs the overlap. The caller waits
/// only for an item a helper is preparing, whose own steps are bounded (each
/// scan has its deadline), and never for a helper that has not begun it.
final class Prefetcher<Item: Sendable>: @unchecked Sendable {
    private let count: Int
    private let prepare: @Sendable (Int) -> Item
    private let condition = MonotonicCondition()
    /// Guarded by `condition`: the next index nobody has claimed, the
    /// results not taken yet, and whether the caller gave up.
    private var nextUnclaimed = 0
    private var results: [Int: Item] = [:]
    private var cancelled = false

    /// Starts up to `helpers` helper threads (fewer when there are fewer items).
    init(count: Int, helpers: Int, prepare: @escaping @Sendable (Int) -> Item) {
        self.count = count
        self.prepare = prepare
        // The caller prepares the first item itself while the helpers start on the next.
        for _ in 0..<max(0, min(helpers, count - 1)) {
            do {
                try HostThread.spawn(name: "host:stage") { [self] in runHelper() }
            } catch {
                break
            }
        }
    }

    /// How many helpers suit this machine: one per core, at least 2, at most
    /// `limit`. Staging a new file mostly waits for its scan process, so
    /// helpers beyond the spare cores still pay: 1,000 distinct plugins were
    /// added in 2.3 s with none, 1.8 s with one, 1.45 s with two or more, on 2 cores.
    static func helpers(atMost limit: Int) -> Int {
        max(2, min(limit, ProcessInfo.processInfo.activeProcessorCount))
    }

    /// The item at `index`; indices must be taken in order, each once.
    func take(_ index: Int) -> Item {
        condition.lock()
        if nextUnclaimed <= index {
            nextUnclaimed = index + 1
            condition.unlock()
            return prepare(index)
        }
        while results[index] == nil { condition.wait() }
        let item = results.removeValue(forKey: index)!
        condition.unlock()
        return item
    }

    /// No helper claims another item. Those being prepared finish and can
    /// still be taken; what nobody takes is dropped with the prefetcher.
    func cancel() {
        condition.withLock { cancelled = true }
    }

    private func claim() -> Int? {
        condition.withLock {
            guard !cancelled, nextUnclaimed < count else { return nil }
            defer { nextUnclaimed += 1 }
            return nextUnclaimed
        }
    }

    private func runHelper() {
        while let index = claim() {
            let item = prepare(index)
            condition.withLock {
                results[index] = item
                condition.broadcast()
            }
        }
    }
}
