import Logging
import Testing
@testable import ServiceHost

/// A stand-in for a service's thread: a name and an identity.
private final class Run: CustomStringConvertible {
    let service: String
    init(_ service: String) { self.service = service }
    var description: String { "run of \(service)" }
}

private typealias Machine = SupervisorStateMachine<Run>

/// A clock that moves only when told.
private final class TestClock: @unchecked Sendable {
    let origin = ContinuousClock.now
    private var offset = Duration.zero
    var now: ContinuousClock.Instant { origin + offset }
    func advance(_ duration: Duration) { offset += duration }
    var read: @Sendable () -> ContinuousClock.Instant { { [self] in now } }
}

/// The supervisor's decisions as a pure value: each test is a sequence of
/// orders and reports, with the actions that come out, and no threads,
/// locks or sleeps.
@Suite("Supervisor state machine")
struct SupervisorStateMachineTests {
    private let failure = StopReason.failed(ServiceFailure(code: 1, message: "boom"))

    private func machine(_ services: [(String, [String])], recovery: Bool = true,
                         configure: (inout ServiceConfiguration) -> Void = { _ in }) throws -> Machine {
        var machine = Machine(recovery: recovery, retryHint: "send SIGHUP")
        for (name, requires) in services {
            var configuration = ServiceConfiguration(requires: requires)
            configure(&configuration)
            try machine.add(name, configuration: configuration)
        }
        return machine
    }

    private func start(_ name: String, in machine: inout Machine, retrying: Bool = false) throws -> [Machine.Action] {
        var actions: [Machine.Action] = []
        try machine.orderStart(name, retrying: retrying, makeRun: Run.init, into: &actions)
        return actions
    }

    /// Starts `name` and reports its service started; returns its run.
    @discardableResult
    private func bringUp(_ name: String, in machine: inout Machine, retrying: Bool = false) throws -> Run {
        let run = try #require(launched(try start(name, in: &machine, retrying: retrying)).first)
        _ = machine.runStarted(name, run, makeRun: Run.init)
        return run
    }

    private func launched(_ actions: [Machine.Action]) -> [Run] {
        actions.compactMap { if case .launch(let run) = $0 { run } else { nil } }
    }

    private func stops(_ actions: [Machine.Action]) -> [(service: String, because: String?)] {
        actions.compactMap { if case .stop(_, let name, let why) = $0 { (name, why) } else { nil } }
    }

    private func logs(_ actions: [Machine.Action]) -> [String] {
        actions.compactMap { if case .log(_, let message, let name, _) = $0 { "\(name): \(message)" } else { nil } }
    }

    private func updates(_ actions: [Machine.Action]) -> [Machine.MetadataChange] {
        actions.compactMap { if case .update(_, let change) = $0 { change } else { nil } }
    }

    @Test func aServiceLaunchesOnlyOnceWhatItRequiresHasStartedNotMerelyLaunched() throws {
        var machine = try machine([("web", ["db"]), ("db", [])])
        #expect(launched(try start("web", in: &machine)).isEmpty)
        let db = try #require(launched(try start("db", in: &machine)).first)
        #expect(db.service == "db")
        // db has a thread, but its service has not started: web still waits.
        guard case .waiting? = machine.phase(of: "web") else { Issue.record("\(String(describing: machine.phase(of: "web")))"); return }
        let web = launched(machine.runStarted("db", db, makeRun: Run.init))
        #expect(web.map(\.service) == ["web"])
        // A late report from an older run of db launches nothing more.
        #expect(machine.runStarted("db", Run("db"), makeRun: Run.init).isEmpty)
    }

    @Test func aRequirementThatStopsOnItsOwnStopsItsDependentsDeepestFirst() throws {
        var machine = try machine([("db", []), ("api", ["db"]), ("web", ["api"])])
        let db = try bringUp("db", in: &machine)
        try bringUp("api", in: &machine)
        try bringUp("web", in: &machine)
        let actions = machine.runEnded("db", db, reason: failure)
        #expect(stops(actions).map(\.service) == ["web", "api"])
        #expect(stops(actions).allSatisfy { $0.because == "it requires db, which stopped" })
        // An ordered end stops nothing: whoever ordered it stops the dependents.
        var other = try self.machine([("db", []), ("api", ["db"])])
        let db2 = try bringUp("db", in: &other)
        try bringUp("api", in: &other)
        #expect(other.runEnded("db", db2, reason: .ordered).isEmpty)
    }

    @Test func aStopOrderStopsDependentsFirstAndTheyComeBackWithTheRequirement() throws {
        var machine = try machine([("db", []), ("api", ["db"])]) { $0.stopTimeout = .seconds(1) }
        let db = try bringUp("db", in: &machine)
        let api = try bringUp("api", in: &machine)
        let actions = try machine.orderStop("db")
        let ordered = stops(actions)
        #expect(ordered.map(\.service) == ["api", "db"])
        #expect(ordered[0].because == "it requires db, which is stopping")
        #expect(ordered[1].because == nil)
        // While api runs, db's thread may be stopping it: a wait for db allows for both.
        #expect(machine.stopDeadline(of: "db") == .seconds(2))
        // Both runs end; api stays wanted and waits, db is stopped.
        _ = machine.runEnded("api", api, reason: .ordered)
        machine.runFinished("api", api)
        // api is stopped by then: db waits for its own stop timeout only.
        #expect(machine.stopDeadline(of: "db") == .seconds(1))
        _ = machine.runEnded("db", db, reason: .ordered)
        machine.runFinished("db", db)
        guard case .waiting? = machine.phase(of: "api"), case .stopped? = machine.phase(of: "db") else {
            Issue.record("\(String(describing: machine.phase(of: "api"))), \(String(describing: machine.phase(of: "db")))")
            return
        }
        // db started again: api comes back once db's service has started.
        let newDB = try #require(launched(try start("db", in: &machine)).first)
        #expect(launched(machine.runStarted("db", newDB, makeRun: Run.init)).map(\.service) == ["api"])
    }

    @Test func aGiveUpIsMarkedFailedInTheSameTransitionAndAStartOrderClearsIt() throws {
        var machine = try machine([("db", []), ("api", ["db"])]) { $0.retries = 0 }
        let db = try bringUp("db", in: &machine)
        let api = try bringUp("api", in: &machine)
        #expect(stops(machine.runEnded("db", db, reason: failure)).map(\.service) == ["api"])
        // api, stopped for db, stays wanted and waits for it.
        _ = machine.runEnded("api", api, reason: .ordered)
        machine.runFinished("api", api)
        let (decision, actions) = machine.decideAfterRun("db", db, reason: failure, ran: .zero, now: .now,
                                                         stopOrdered: false, stopsForGood: false)
        #expect(decision == .remainStopped)
        guard case .failed(let reason, recorded: false)? = updates(actions).first else {
            Issue.record("\(actions)")
            return
        }
        #expect(reason.hasPrefix("gave up after 0 restarts (retries = 0)"))
        #expect(machine.phase(of: "db")?.failure == reason)
        #expect(machine.failedServices == ["db"])
        // The service waiting for it is told why it waits.
        #expect(logs(actions).contains("api: waiting for 'db', which failed: \(reason)"))
        // A start order clears the failure, in the same transition that takes it.
        let restarted = try start("db", in: &machine)
        #expect(updates(restarted) == [.startOrdered(retrying: false)])
        #expect(launched(restarted).map(\.service) == ["db"])
        #expect(machine.failedServices.isEmpty)
    }

    @Test func aStartOrderedWhileARunEndsMakesTheThreadRunAgainAtOnce() throws {
        var machine = try machine([("job", [])], recovery: false)
        let job = try bringUp("job", in: &machine)
        _ = machine.runEnded("job", job, reason: .finished)
        // A caller saw the `stopped` event and orders a start: kept, no new thread.
        #expect(launched(try start("job", in: &machine)).isEmpty)
        let (decision, actions) = machine.decideAfterRun("job", job, reason: .finished, ran: .zero, now: .now,
                                                         stopOrdered: false, stopsForGood: false)
        #expect(decision == .restart(after: .zero))
        #expect(logs(actions) == ["job: starting again, as ordered while its run was ending"])
        #expect(machine.phase(of: "job")?.run === job)
    }

    @Test func aRestartCountsAndAPendingStopOrderOrShutdownKeepsTheServiceStopped() throws {
        var machine = try machine([("flaky", [])])
        let flaky = try bringUp("flaky", in: &machine)
        _ = machine.runEnded("flaky", flaky, reason: failure)
        let (decision, actions) = machine.decideAfterRun("flaky", flaky, reason: failure, ran: .seconds(60), now: .now,
                                                         stopOrdered: false, stopsForGood: false)
        #expect(decision == .restart(after: .zero))
        #expect(updates(actions) == [.restarting(restarts: 1, cause: .error)])
        #expect(logs(actions) == ["flaky: restarting (attempt #2)"])
        _ = machine.runStarted("flaky", flaky, makeRun: Run.init)
        _ = machine.runEnded("flaky", flaky, reason: failure)
        #expect(machine.decideAfterRun("flaky", flaky, reason: failure, ran: .zero, now: .now,
                                       stopOrdered: true, stopsForGood: false).0 == .remainStopped)
        machine.beginShutdown()
        #expect {
            try start("flaky", in: &machine)
        } throws: { error in
            (error as? ServiceError)?.code == .shutDown
        }
    }

    @Test func aRunThatEndsWhileItsStopWaitsForItsDependentsStaysStopped() throws {
        // The stop is ordered and its dependents are being stopped first, so
        // the service's own stop signal is not raised yet when its run fails.
        var machine = try machine([("db", []), ("api", ["db"])]) { $0.retries = 0 }
        let db = try bringUp("db", in: &machine)
        try bringUp("api", in: &machine)
        _ = try machine.orderStop("db")
        _ = machine.runEnded("db", db, reason: failure)
        let (decision, actions) = machine.decideAfterRun("db", db, reason: failure, ran: .zero, now: .now,
                                                         stopOrdered: false, stopsForGood: false)
        #expect(decision == .remainStopped)
        // Neither restarted nor given up: an operator's stop is not a failure, and no retry starts it.
        #expect(actions.isEmpty)
        #expect(machine.failedServices.isEmpty)
        machine.runFinished("db", db)
        guard case .stopped? = machine.phase(of: "db") else { Issue.record("\(String(describing: machine.phase(of: "db")))"); return }
    }

    @Test func nothingNewLaunchesOnARequirementWhoseOwnRequirementIsStopping() throws {
        var machine = try machine([("db", []), ("api", ["db"]), ("web", ["api"])])
        try bringUp("db", in: &machine)
        // api is launched but still in svc_create; web waits for it.
        let api = try #require(launched(try start("api", in: &machine)).first)
        _ = try start("web", in: &machine)
        #expect(stops(try machine.orderStop("db")).map(\.service) == ["api", "db"])
        // api's create finishes before its stop is performed: web must not lean on it.
        #expect(launched(machine.runStarted("api", api, makeRun: Run.init)).isEmpty)
        guard case .waiting? = machine.phase(of: "web") else { Issue.record("\(String(describing: machine.phase(of: "web")))"); return }
    }

    @Test func aRunAbandonedEarlierThatEndsAtLastStopsNothingOfTheCurrentOne() throws {
        var machine = try machine([("db", []), ("api", ["db"])])
        let old = try bringUp("db", in: &machine)
        _ = try machine.orderStop("db")
        _ = machine.runAbandoned("db", old)
        #expect(machine.runAbandoned("db", old).isEmpty)
        // The hung call returns: not wanted, so it stays failed, and a retry may start it.
        let returned = machine.hungCallReturned("db", old, makeRun: Run.init)
        #expect(logs(returned) == ["db: the hung call returned; the service can be started again"])
        #expect(machine.failedServices == ["db"])
        try bringUp("db", in: &machine, retrying: true)
        try bringUp("api", in: &machine)
        // The old thread's late report of its run's end stops nothing.
        #expect(machine.runEnded("db", old, reason: failure).isEmpty)
    }

    @Test func shutdownStopsInRoundsDependentsBeforeWhatTheyRequire() throws {
        var machine = try machine([("db", []), ("api", ["db"]), ("cron", [])])
        let db = try bringUp("db", in: &machine)
        let api = try bringUp("api", in: &machine)
        let cron = try bringUp("cron", in: &machine)
        machine.beginShutdown()
        #expect(stops(machine.shutdownRound()).map(\.service) == ["api", "cron"])
        machine.runFinished("api", api)
        machine.runFinished("cron", cron)
        #expect(stops(machine.shutdownRound()).map(\.service) == ["db"])
        machine.runFinished("db", db)
        #expect(machine.shutdownRound().isEmpty)
    }

    @Test func anAbandonedRunBlocksStartsUntilItsCallReturnsThenAWantedServiceRunsAgain() throws {
        var machine = try machine([("db", []), ("api", ["db"])]) { $0.stopTimeout = .milliseconds(250) }
        let db = try bringUp("db", in: &machine)
        let api = try bringUp("api", in: &machine)
        // db is stopped by order; api, stopped for it, does not end in time.
        #expect(stops(try machine.orderStop("db")).map(\.service) == ["api", "db"])
        let hung = machine.runAbandoned("api", api)
        let why = "hung: svc_loop did not return within stop_timeout_ms (250 ms) of the stop; its thread was abandoned"
        #expect(updates(hung) == [.failed(reason: why, recorded: true)])
        #expect(logs(hung) == ["api: \(why)"])
        #expect {
            try start("api", in: &machine)
        } throws: { error in
            (error as? ServiceError)?.reason == "cannot start: its previous run is still inside the plugin (hung)"
        }
        machine.runFinished("db", db)
        let newDB = try #require(launched(try start("db", in: &machine)).first)
        // db is up again, but api's thread is still inside the plugin: nothing to launch.
        #expect(launched(machine.runStarted("db", newDB, makeRun: Run.init)).isEmpty)
        // Its call returns: api is still wanted, so it runs again, no longer failed.
        let returned = machine.hungCallReturned("api", api, makeRun: Run.init)
        #expect(logs(returned) == ["api: the hung call returned; starting it again, as it is still ordered to run"])
        #expect(launched(returned).map(\.service) == ["api"])
        #expect(updates(returned) == [.startOrdered(retrying: true), .restartCounted(.watchdog)])
        // A second report of the same return changes nothing.
        #expect(machine.hungCallReturned("api", api, makeRun: Run.init).isEmpty)
    }

    @Test func aBrokenDependencyIsLoggedOnceRefusedWithItsReasonAndTheOthersStart() throws {
        var machine = try machine([("web", ["cache"]), ("a", ["b"]), ("b", ["a"]), ("ok", [])])
        var actions: [Machine.Action] = []
        #expect {
            try machine.orderStart("web", makeRun: Run.init, into: &actions)
        } throws: { error in
            (error as? ServiceError)?.reason == "cannot start: requires 'cache', which is not a known service"
        }
        #expect(logs(actions) == [
            "web: not started: requires 'cache', which is not a known service",
            "a: not started: its requirements form a cycle: a -> b -> a",
            "b: not started: its requirements form a cycle: b -> a -> b",
        ])
        // Logged once: a second order is refused again, silently.
        actions = []
        #expect(throws: ServiceError.self) { try machine.orderStart("a", makeRun: Run.init, into: &actions) }
        #expect(logs(actions).isEmpty)
        #expect(launched(try start("ok", in: &machine)).map(\.service) == ["ok"])
    }

    @Test func aRemovedServiceTakesNoMoreOrdersAndIsForgotten() throws {
        var machine = try machine([("job", [])])
        let job = try bringUp("job", in: &machine)
        #expect(stops(try machine.orderRemoval("job")).map(\.service) == ["job"])
        #expect {
            try start("job", in: &machine)
        } throws: { error in
            (error as? ServiceError)?.reason == "the service is being removed"
        }
        machine.runFinished("job", job)
        machine.removed("job")
        #expect(machine.names.isEmpty)
        #expect(throws: ServiceError.self) { try machine.orderStop("job") }
    }

    @Test func aWaitForARequirementThatCannotStartIsLoggedOnceUntilItLaunches() throws {
        var machine = try machine([("db", []), ("web", ["db"])]) { $0.retries = 0 }
        let db = try bringUp("db", in: &machine)
        _ = machine.runEnded("db", db, reason: failure)
        _ = machine.decideAfterRun("db", db, reason: failure, ran: .zero, now: .now, stopOrdered: false, stopsForGood: false)
        let first = logs(try start("web", in: &machine))
        #expect(first.count == 1 && first[0].hasPrefix("web: waiting for 'db', which failed: gave up after 0 restarts"))
        #expect(logs(try start("web", in: &machine)).isEmpty)
        // db is started again: web launches, and a later wait would be logged anew.
        let newDB = try #require(launched(try start("db", in: &machine)).first)
        #expect(launched(machine.runStarted("db", newDB, makeRun: Run.init)).map(\.service) == ["web"])
    }

    @Test func withRecoveryOffAServiceThatEndsStaysStoppedSayingWhy() throws {
        var machine = try machine([("job", [])], recovery: false)
        let job = try bringUp("job", in: &machine)
        _ = machine.runEnded("job", job, reason: .finished)
        let (decision, actions) = machine.decideAfterRun("job", job, reason: .finished, ran: .zero, now: .now,
                                                         stopOrdered: false, stopsForGood: false)
        #expect(decision == .remainStopped)
        #expect(logs(actions) == ["job: not restarting: restart policy is never, recovery is off"])
        #expect(machine.failedServices.isEmpty)
        // Switching recovery on changes the policy of services without one of their own.
        machine.recovery = true
        #expect(machine.policy(configured: nil) == .always)
        #expect(machine.policy(configured: .onFailure) == .onFailure)
    }

    @Test func theStatusAnOperatorSeesFollowsEveryTransitionWithTheTimeItEnteredIt() throws {
        let clock = TestClock()
        var machine = Machine(recovery: true, retryHint: "send SIGHUP", clock: clock.read)
        try machine.add("db", configuration: ServiceConfiguration())
        try machine.add("api", configuration: ServiceConfiguration(requires: ["db"]))
        #expect(machine.status(of: "api")?.state == .idle)
        clock.advance(.seconds(1))
        _ = try start("api", in: &machine)
        #expect(machine.status(of: "api")?.state == .starting)
        #expect(machine.status(of: "api")?.waitingFor == ["db"])
        #expect(machine.status(of: "api")?.since == clock.origin + .seconds(1))
        clock.advance(.seconds(1))
        let db = try bringUp("db", in: &machine)
        #expect(machine.status(of: "db")?.state == .running)
        #expect(machine.status(of: "db")?.since == clock.origin + .seconds(2))
        // A quick failure: restarted at once (first restart), then in backoff.
        _ = machine.runEnded("db", db, reason: failure)
        #expect(machine.status(of: "db")?.state == .stopping)
        #expect(machine.status(of: "db")?.lastExit == failure)
        _ = machine.decideAfterRun("db", db, reason: failure, ran: .seconds(60), now: clock.now, stopOrdered: false, stopsForGood: false)
        #expect(machine.status(of: "db")?.state == .starting)
        _ = machine.runStarted("db", db, makeRun: Run.init)
        _ = machine.runEnded("db", db, reason: failure)
        _ = machine.decideAfterRun("db", db, reason: failure, ran: .zero, now: clock.now, stopOrdered: false, stopsForGood: false)
        let backoff = try #require(machine.status(of: "db"))
        #expect(backoff.state == .backoff)
        #expect(backoff.backoffUntil == clock.now + .milliseconds(100))
        // The restart after the backoff succeeds: running again, since then.
        clock.advance(.seconds(1))
        _ = machine.runStarted("db", db, makeRun: Run.init)
        #expect(machine.status(of: "db")?.state == .running)
        #expect(machine.status(of: "db")?.since == clock.now)
        _ = try machine.orderStop("db")
        #expect(machine.status(of: "db")?.state == .stopping)
        machine.runFinished("db", db)
        #expect(machine.status(of: "db")?.state == .stopped)
    }

    @Test func aServiceStoppedByAnOperatorStaysStoppedWhenItsRequirementComesBack() throws {
        var machine = try machine([("db", []), ("api", ["db"])])
        let db = try bringUp("db", in: &machine)
        let api = try bringUp("api", in: &machine)
        _ = try machine.orderStop("api")
        _ = machine.runEnded("api", api, reason: .ordered)
        machine.runFinished("api", api)
        #expect(machine.isStoppedByOrder("api"))
        // db fails and restarts: api is not started with it.
        _ = machine.runEnded("db", db, reason: failure)
        _ = machine.decideAfterRun("db", db, reason: failure, ran: .seconds(60), now: .now, stopOrdered: false, stopsForGood: false)
        #expect(launched(machine.runStarted("db", db, makeRun: Run.init)).isEmpty)
        #expect(machine.status(of: "api")?.state == .stopped)
        #expect(machine.failedServices.isEmpty)
    }

    @Test func aRunnerThatFailsMarksTheServiceFailedOnceAndALateReportChangesNothing() throws {
        var machine = try machine([("job", [])])
        let job = try bringUp("job", in: &machine)
        let actions = machine.runnerFailed("job", job, reason: "no thread")
        #expect(updates(actions) == [.failed(reason: "no thread", recorded: true)])
        #expect(logs(actions) == ["job: failed: no thread"])
        #expect(machine.runnerFailed("job", job, reason: "again").isEmpty)
        #expect(machine.failedServices == ["job"])
    }
}
