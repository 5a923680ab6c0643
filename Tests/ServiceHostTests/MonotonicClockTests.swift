import Foundation
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// Every timeout waits on the monotonic clock, never the wall clock.
@Suite("Monotonic timeouts")
struct MonotonicClockTests {
    @Test func timedWaitsUseTheMonotonicClock() {
        let condition = MonotonicCondition()
        #expect(condition.clock == clockid_t(CLOCK_MONOTONIC))
        let deadline = ContinuousClock.now + .milliseconds(20)
        condition.lock()
        while condition.wait(until: deadline) {}
        condition.unlock()
        // A timed wait never ends before its deadline on the clock it was given.
        #expect(ContinuousClock.now >= deadline)
    }

    @Test func aBlockingCompletionWaitEndsAtItsDeadline() {
        let never = Completion()
        let began = ContinuousClock.now
        #expect(never.waitBlocking(timeout: .milliseconds(30)) == false)
        #expect(ContinuousClock.now - began >= .milliseconds(30))
    }

    /// A source check: the timeouts' files wait through `MonotonicCondition`,
    /// and no file of the supervisor waits until a wall-clock `Date`.
    @Test func noSupervisorWaitUsesTheWallClock() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/ServiceHost/Supervising").standardized.path
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) where file.hasSuffix(".swift") {
            let text = try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)
            #expect(!text.contains("NSCondition()"), "\(file) waits on an NSCondition (wall clock)")
            #expect(!text.contains("wait(until: Date"), "\(file) waits until a wall-clock Date")
            #expect(!text.contains("DispatchTime"), "\(file) uses DispatchTime")
        }
    }
}
