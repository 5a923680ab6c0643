import Testing
@testable import ServiceHost

/// Restart decisions as a pure value, with the time given: no threads, no sleeps.
@Suite("Restart tracker")
struct RestartTrackerTests {
    private let failure = StopReason.startFailed(ServiceFailure(code: -1, message: "no database"))
    private let start = ContinuousClock.now

    /// Ends one run and decides, as the manager does.
    private func end(_ tracker: inout RestartTracker, after seconds: Int = 0, ran: Duration = .zero,
                     policy: RestartPolicy = .always, hint: String = "call retryFailed()") -> RestartTracker.Decision {
        tracker.runEnded()
        return tracker.decide(after: failure, ran: ran, now: start + .seconds(seconds), policy: policy, retryHint: hint)
    }

    @Test func theAttemptCounterMovesWhileCreateKeepsFailing() {
        var tracker = RestartTracker(.init(backoffInitial: .milliseconds(200), restartLimit: 0))
        let decisions = (0..<3).map { _ in end(&tracker) }
        #expect(decisions == [
            .restart(restart: 1, attempt: 2, delay: .zero),
            .restart(restart: 2, attempt: 3, delay: .milliseconds(200)),
            .restart(restart: 3, attempt: 4, delay: .milliseconds(400)),
        ])
    }

    @Test func retriesRunOutWithAProperPlural() {
        var tracker = RestartTracker(.init(retries: 1, restartLimit: 0))
        #expect(end(&tracker) == .restart(restart: 1, attempt: 2, delay: .zero))
        guard case .giveUp(let why) = end(&tracker) else { Issue.record("did not give up"); return }
        #expect(why.hasPrefix("gave up after 1 restart (retries = 1); it stays stopped until retried (call retryFailed())"))
    }

    @Test func theIntensityWindowCountsOnlyRecentRestartsWithAProperPlural() {
        var tracker = RestartTracker(.init(backoffInitial: .zero, restartLimit: 1, restartWindow: .seconds(60)))
        #expect(end(&tracker, after: 0) == .restart(restart: 1, attempt: 2, delay: .zero))
        guard case .giveUp(let why) = end(&tracker, after: 30) else { Issue.record("did not give up"); return }
        #expect(why.hasPrefix("restarted 1 time within 60000 ms (restart_limit = 1); it stays stopped until retried (send SIGHUP)") == false)
        #expect(why.hasPrefix("restarted 1 time within 60000 ms (restart_limit = 1); it stays stopped until retried (call retryFailed())"))
        // Out of the window, the old restart no longer counts.
        var later = RestartTracker(.init(backoffInitial: .zero, restartLimit: 1, restartWindow: .seconds(60)))
        _ = end(&later, after: 0)
        #expect(end(&later, after: 61) == .restart(restart: 2, attempt: 3, delay: .zero))
    }

    @Test func theRetryHintIsTheHostsOwn() {
        var tracker = RestartTracker(.init(retries: 0))
        guard case .giveUp(let why) = end(&tracker, hint: "send SIGHUP") else { Issue.record("did not give up"); return }
        #expect(why.contains("until retried (send SIGHUP)"))
        var embedded = RestartTracker(.init(retries: 0))
        guard case .giveUp(let other) = end(&embedded) else { Issue.record("did not give up"); return }
        #expect(!other.contains("SIGHUP"))
    }

    @Test func aRetryGivesOneMoreStartNotANewBudget() {
        var tracker = RestartTracker(.init(backoffInitial: .zero, healthyAfter: .seconds(10), restartLimit: 2))
        #expect(end(&tracker, after: 0) == .restart(restart: 1, attempt: 2, delay: .zero))
        #expect(end(&tracker, after: 1) == .restart(restart: 2, attempt: 3, delay: .zero))
        guard case .giveUp = end(&tracker, after: 2) else { Issue.record("did not give up"); return }
        tracker.retry()
        // The one more start fails quickly: failed again at once.
        guard case .giveUp(let why) = end(&tracker, after: 3) else { Issue.record("got a new budget"); return }
        #expect(why.hasPrefix("its retry (one more start) ended too"))
        // A retried run that proves healthy earns the budget back.
        tracker.retry()
        #expect(end(&tracker, after: 4, ran: .seconds(10)) == .restart(restart: 1, attempt: 6, delay: .zero))
        // A start order is a fresh budget.
        tracker.orderedStart()
        #expect(end(&tracker, after: 100) == .restart(restart: 1, attempt: 7, delay: .zero))
    }

    @Test func thePolicyAndAnUnloadableFileDecideFirst() {
        var tracker = RestartTracker(.init())
        tracker.runEnded()
        #expect(tracker.decide(after: .finished, ran: .zero, now: start, policy: .onFailure, retryHint: "x")
            == .remainStopped(why: "not restarting: restart policy is on-failure"))
        #expect(tracker.decide(after: failure, ran: .zero, now: start, policy: .never, recoveryOff: true, retryHint: "x")
            == .remainStopped(why: "not restarting: restart policy is never, recovery is off"))
        guard case .giveUp(let why) = tracker.decide(after: failure, ran: .zero, now: start, policy: .always,
                                                    stopsForGood: true, retryHint: "send SIGHUP") else { return }
        #expect(why.hasPrefix("its plugin cannot be loaded; fix the file, then send SIGHUP."))
    }
}
