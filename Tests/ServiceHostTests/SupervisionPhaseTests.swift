import Testing
@testable import ServiceHost

/// A stand-in for a service's thread: only its identity matters here.
private final class Run {}

/// The per-service supervision phase as a pure value: every interleaving of
/// orders and reports is a sequence of calls, tested without threads.
@Suite("Supervision phase")
struct SupervisionPhaseTests {
    @Test func aStartRacingAGiveUpIsEitherRefusedOrClearsIt() throws {
        // The run is still ending when the start order comes: refused, not lost.
        var phase = SupervisionPhase<Run>.waiting
        let run = Run()
        phase.launched(run)
        #expect(throws: SupervisionPhase<Run>.Refusal.alreadyRunning) { try phase.orderStart() }
        // The run gives up: the service stays stopped and is marked failed in the same step.
        let gaveUp = phase.gaveUp(run, reason: "gave up")
        #expect(gaveUp)
        #expect(!phase.isWanted)
        #expect(phase.failure == "gave up")
        // A start order after it starts afresh.
        try phase.orderStart()
        guard case .waiting = phase else { Issue.record("\(phase)"); return }
        // A late report from the old run changes nothing.
        let late = phase.gaveUp(run, reason: "late")
        #expect(!late)
        guard case .waiting = phase else { Issue.record("\(phase)"); return }
    }

    @Test func aStartOrderedWhileARunEndsIsKeptAndTheThreadRunsAgain() throws {
        var phase = SupervisionPhase<Run>.waiting
        let run = Run()
        phase.launched(run)
        phase.runEnded(run)
        #expect(!phase.startOrderedWhileEnding)
        // A caller saw the run's `stopped` event and orders a start: taken, not refused.
        try phase.orderStart()
        #expect(phase.startOrderedWhileEnding)
        #expect(phase.isWanted)
        phase.continues(run)
        guard case .running(let current) = phase, current === run else { Issue.record("\(phase)"); return }
        #expect(!phase.startOrderedWhileEnding)
    }

    @Test func aStopOrderedWhileARunEndsWinsOverAnEarlierStartOrder() throws {
        var phase = SupervisionPhase<Run>.waiting
        let run = Run()
        phase.launched(run)
        phase.runEnded(run)
        try phase.orderStart()
        phase.orderStop()
        guard case .stopping = phase else { Issue.record("\(phase)"); return }
        #expect(!phase.startOrderedWhileEnding)
        // The thread's later decision to run again changes nothing.
        phase.continues(run)
        guard case .stopping = phase else { Issue.record("\(phase)"); return }
        let ended = phase.ended(run)
        #expect(ended)
        guard case .stopped = phase else { Issue.record("\(phase)"); return }
    }

    @Test func anEndingRunThatGivesUpLeavesTheServiceStoppedAndALateReportChangesNothing() {
        var phase = SupervisionPhase<Run>.waiting
        let run = Run()
        phase.launched(run)
        phase.runEnded(run)
        let gaveUp = phase.ended(run, staysStopped: true)
        #expect(gaveUp)
        // Left stopped by its policy, not by an order: `done`, which an operator sees as stopped.
        guard case .done = phase else { Issue.record("\(phase)"); return }
        #expect(phase.publicState == .stopped)
        phase.runEnded(run)
        phase.continues(run)
        guard case .done = phase else { Issue.record("\(phase)"); return }
        phase.orderStop()
        guard case .stopped = phase else { Issue.record("\(phase)"); return }
    }

    @Test func aDependentStoppedForItsRequirementWaitsToStartAgain() {
        var phase = SupervisionPhase<Run>.waiting
        let run = Run()
        phase.launched(run)
        let ended = phase.ended(run)
        #expect(ended)
        guard case .waiting = phase else { Issue.record("\(phase)"); return }
        #expect(phase.isWanted)
    }

    @Test func aStopOrderEndsInStoppedAndAHungRunBlocksStartsUntilItReturns() throws {
        var phase = SupervisionPhase<Run>.waiting
        let run = Run()
        phase.launched(run)
        phase.orderStop()
        #expect(phase.run === run)
        #expect(!phase.isWanted)
        phase.abandoned(run, reason: "hung")
        #expect(phase.run == nil)
        #expect(throws: SupervisionPhase<Run>.Refusal.hung) { try phase.orderStart() }
        phase.hungCallReturned(run)
        // Not wanted any more: it stays marked failed for its hang until a start order.
        guard case .failed(reason: "hung") = phase else { Issue.record("\(phase)"); return }
        try phase.orderStart()
        #expect(phase.isWanted)
    }

    @Test func aStopOrderBeforeTheLaunchLeavesNothingToStop() {
        var phase = SupervisionPhase<Run>.waiting
        phase.orderStop()
        guard case .stopped = phase else { Issue.record("\(phase)"); return }
        #expect(phase.run == nil)
    }
}
