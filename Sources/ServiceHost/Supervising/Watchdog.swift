import Foundation
import Synchronization

/// Notices calls into a service that run too long: an `svc_loop` past the
/// service's `watchdog_ms`, an `svc_create` past its `start_timeout_ms`.
///
/// The calls stamp their start in a ``CallClock`` (two atomic stores per call,
/// and only for services that enabled a limit). One thread checks the clocks,
/// waking a few times per shortest limit while any limited service runs, and
/// sleeping without a timeout when none does.
final class Watchdog: @unchecked Sendable {
    static let shared = Watchdog()

    /// What ran too long.
    enum Call: Sendable, Equatable {
        case create
        case loop
    }

    private let condition = MonotonicCondition()
    private var watched: [ObjectIdentifier: CallClock] = [:]
    /// How many runs watch each clock: a new run of a service can begin while
    /// the thread of its last run is still on its way out.
    private var watchers: [ObjectIdentifier: Int] = [:]
    private var started = false

    func watch(_ clock: CallClock) {
        condition.lock()
        watched[ObjectIdentifier(clock)] = clock
        watchers[ObjectIdentifier(clock), default: 0] += 1
        if !started {
            started = true
            do {
                try HostThread.spawn(name: "host:watchdog") { [self] in run() }
            } catch {
                started = false  // tried again on the next call
            }
        }
        condition.broadcast()
        condition.unlock()
    }

    func isWatching(_ clock: CallClock) -> Bool {
        condition.withLock { watched[ObjectIdentifier(clock)] != nil }
    }

    func unwatch(_ clock: CallClock) {
        condition.withLock {
            let key = ObjectIdentifier(clock)
            watchers[key, default: 1] -= 1
            if watchers[key] == 0 {
                watchers[key] = nil
                watched[key] = nil
            }
        }
    }

    private func run() {
        condition.lock()
        while true {
            if watched.isEmpty {
                condition.wait()
                continue
            }
            let clocks = Array(watched.values)
            let shortest = clocks.map(\.shortestLimit).min() ?? .seconds(1)
            // A quarter of the shortest limit: a hang is noticed at most 25 % late.
            let period = max(.milliseconds(1), min(.seconds(1), shortest / 4))
            condition.unlock()
            let now = CallClock.now()
            for clock in clocks { clock.check(now: now) }
            condition.lock()
            condition.wait(until: .now + period)
        }
    }
}

/// Where a service's thread stamps the start of its current create or loop
/// call, for the ``Watchdog``.
final class CallClock: @unchecked Sendable {
    let loopLimit: Duration?
    let createLimit: Duration?
    private let loopStarted = Atomic<Int64>(0)
    private let createStarted = Atomic<Int64>(0)
    /// The start stamp of the call already reported, so that one hang is reported once.
    private let reportedLoop = Atomic<Int64>(0)
    private let reportedCreate = Atomic<Int64>(0)
    private let onOverrun: @Sendable (Watchdog.Call, Duration) -> Void

    /// - Parameter onOverrun: called on the watchdog's thread, once per call that overran.
    init(loopLimit: Duration?, createLimit: Duration?, onOverrun: @escaping @Sendable (Watchdog.Call, Duration) -> Void) {
        self.loopLimit = loopLimit
        self.createLimit = createLimit
        self.onOverrun = onOverrun
    }

    var shortestLimit: Duration { [loopLimit, createLimit].compactMap { $0 }.min() ?? .seconds(1) }

    static func now() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return now.nanoseconds
    }

    @inline(__always) func loopBegins() { loopStarted.store(Self.now(), ordering: .relaxed) }
    @inline(__always) func loopEnds() { loopStarted.store(0, ordering: .relaxed) }
    func createBegins() { createStarted.store(Self.now(), ordering: .relaxed) }
    func createEnds() { createStarted.store(0, ordering: .relaxed) }

    func check(now: Int64) {
        check(.loop, started: loopStarted, reported: reportedLoop, limit: loopLimit, now: now)
        check(.create, started: createStarted, reported: reportedCreate, limit: createLimit, now: now)
    }

    private func check(_ call: Watchdog.Call, started: borrowing Atomic<Int64>, reported: borrowing Atomic<Int64>,
                       limit: Duration?, now: Int64) {
        guard let limit else { return }
        let start = started.load(ordering: .relaxed)
        guard start != 0 else { return }
        let elapsed = Duration.nanoseconds(now - start)
        guard elapsed > limit, reported.exchange(start, ordering: .relaxed) != start else { return }
        onOverrun(call, elapsed)
    }
}
