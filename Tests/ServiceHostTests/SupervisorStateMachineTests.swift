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
    private func bringUp(_ name: String, in machine: inout Machine) throws -> Run {
        let run = try #require(launched(try start(name, in: &machine)).first)
        _ = machine.runStarted(name, run, makeRun: Run.init)
        return run
    }

    private func launched(_ actions: [Machine.Action]) -> [Run] {
        actions.compactMap { if case .launch(let run) = $0 { run } else { nil } }
    }

    private func stops(_ actions: [Machine.Action]) -> [(service: String, because: String?, within: Duration)] {
        actions.compactMap { if case .stop(_, let name, let why, let within) = $0 { (name, why, within) } else { nil } }
    }

    private func logs(_ actions: [Machine.Action]) -> [String] {
        actions.compactMap { if case .log(_, let message, let name) = $0 { "\(name): \(message)" } else { nil } }
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

    @Test func aStopOrderStopsDependentsFirstWithinTheirAllowancesAndTheyComeBackWithTheRequirement() throws {
        var machine = try machine([("db", []), ("api", ["db"])]) { $0.stopTimeout = .seconds(1) }
        let db = try bringUp("db", in: &machine)
        let api = try bringUp("api", in: &machine)
        let actions = try machine.orderStop("db")
        let ordered = stops(actions)
        #expect(ordered.map(\.service) == ["api", "db"])
        #expect(ordered[0].because == "it requires db, which is stopping")
        #expect(ordered[1].because == nil)
        // db's thread may be stopping api at that moment: db gets both allowances.
        #expect(ordered[1].within == .seconds(2))
        #expect(ordered[0].within == .seconds(1))
        // Both runs end; api stays wanted and waits, db is stopped.
        _ = machine.runEnded("api", api, reason: .ordered)
        machine.runFinished("api", api)
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
        #expect(updates(actions) == [.restarting(restarts: 1)])
        #expect(logs(actions) == ["flaky: restarting (attempt #2)"])
        _ = machine.runStarted("flaky", flaky, makeRun: Run.init)
        _ = machine.runEnded("flaky", flaky, reason: failure)
        #expect(machine.decideAfterRun("flaky", flaky, reason: failure, ran: .zero, now: .now,
                                       stopOrdered: true, stopsForGood: false).0 == .remainStopped)
        machine.beginShutdown()
        #expect(throws: ServiceError.self) { try start("flaky", in: &machine) }
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
        _ = try machine.orderStop("db")
        let hung = machine.runAbandoned("api", api)
        let why = "hung: svc_loop did not return within stop_timeout_ms (250 ms) of the stop; its thread was abandoned"
        #expect(updates(hung) == [.failed(reason: why, recorded: true)])
        #expect(logs(hung) == ["api: \(why)"])
        #expect(throws: ServiceError.self) { try start("api", in: &machine) }
        machine.runFinished("db", db)
        let newDB = try #require(launched(try start("db", in: &machine)).first)
        // db is up again, but api's thread is still inside the plugin: nothing to launch.
        #expect(launched(machine.runStarted("db", newDB, makeRun: Run.init)).isEmpty)
        // Its call returns: api is still wanted, so it runs again, no longer failed.
        let returned = machine.hungCallReturned("api", api, makeRun: Run.init)
        #expect(launched(returned).map(\.service) == ["api"])
        #expect(updates(returned) == [.startOrdered(retrying: true)])
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
