import Foundation
import Testing
@testable import ServiceHost

/// `requires`: start order, dependents stopped before and restarted after
/// what they require, and broken dependency graphs.
@Suite("Dependencies")
struct DependencyTests {
    private func order(of kind: (ServiceEvent.Kind) -> Bool, in events: [ServiceEvent]) -> [String] {
        events.filter { kind($0.kind) }.map(\.service)
    }

    @Test func aServiceStartsOnlyAfterWhatItRequires() async throws {
        // Added in reverse order on purpose: the file names sort App < Cache < Database.
        let host = try await TestHost(probes: [
            ("App.so", "requires = [\"Cache\", \"Database\"]\n"),
            ("Cache.so", "requires = [\"Database\"]\n"),
            ("Database.so", "delay_ms = 50\n"),
        ])
        try await host.events.first("App") { $0.isStarted }
        #expect(order(of: \.isStarted, in: host.events.seen) == ["Database", "Cache", "App"])
        await host.scheduler.shutdown()
    }

    @Test func dependentsStopFirstAndComeBackAfterTheirRequirement() async throws {
        let host = try await TestHost(probes: [
            ("App.so", "requires = [\"Cache\"]\n"),
            ("Cache.so", "requires = [\"Database\"]\n"),
            // The database stops itself after a while (a second each run, so
            // that the chain is back up long before it stops again); recovery
            // brings it back.
            ("Database.so", "interval_ms = 200\n[config]\nstop_after = 5\n"),
        ])
        try await host.events.first("App") { $0.isStarted }
        try await host.events.next("Database") { $0 == .stopped(.requested) }
        try await host.events.next("App") { $0.isStarted }
        let seen = host.events.seen
        let databaseStopped = try #require(seen.firstIndex { $0.service == "Database" && $0.kind == .stopped(.requested) })
        // From the database's stop to the app's return.
        let appBack = try #require(seen.lastIndex { $0.service == "App" && $0.kind.isStarted })
        let afterwards = Array(seen[databaseStopped...appBack])
        // Deepest first: App, then Cache, both by order, before the database restarts...
        #expect(afterwards.filter { $0.kind == .stopped(.ordered) }.map(\.service) == ["App", "Cache"])
        let databaseRestarting = try #require(afterwards.firstIndex { $0.service == "Database" && $0.kind.isRestarting })
        let cacheStopped = try #require(afterwards.firstIndex { $0.service == "Cache" && $0.kind == .stopped(.ordered) })
        #expect(cacheStopped < databaseRestarting)
        // ...and back in dependency order once it has started again.
        #expect(order(of: \.isStarted, in: afterwards) == ["Database", "Cache", "App"])
        for name in ["App", "Cache"] {
            #expect(host.logs.entries { $0.service == name && $0.message == "stopping: it requires Database, which stopped" }.isEmpty == false)
        }
        await host.scheduler.shutdown()
    }

    @Test func shutdownStopsDependentsBeforeWhatTheyRequire() async throws {
        let host = try await TestHost(probes: [
            ("App.so", "requires = [\"Database\"]\n"),
            ("Database.so", ""),
            ("Other.so", ""),
        ])
        try await host.events.first("App") { $0.isStarted }
        await host.scheduler.shutdown()
        let stops = order(of: { $0 == .stopped(.ordered) }, in: try await host.events.remaining())
        #expect(Set(stops) == ["App", "Database", "Other"])
        #expect(try #require(stops.firstIndex(of: "App")) < #require(stops.firstIndex(of: "Database")))
    }

    @Test func stoppingARequirementByOrderStopsItsDependentsAndStartingItBringsThemBack() async throws {
        let host = try await TestHost(probes: [("App.so", "requires = [\"Database\"]\n"), ("Database.so", "")])
        try await host.events.first("App") { $0.isStarted }
        try await host.scheduler.stop("Database")
        #expect(host.scheduler.snapshot(of: "App")?.state == .stopped)
        #expect(host.scheduler.snapshot(of: "Database")?.state == .stopped)
        try host.scheduler.start("Database")
        try await host.events.next("App") { $0 == .started(starts: 2) }
        await host.scheduler.shutdown()
    }

    @Test func anUnknownRequirementIsAnErrorAndOnlyThatServiceStaysStopped() async throws {
        let host = try await TestHost(probes: [("App.so", "requires = [\"Ghost\"]\n"), ("Fine.so", "")])
        try await host.events.first("Fine") { $0.isStarted }
        let line = try await host.logs.waitFor { $0.service == "App" && $0.level == .error }
        #expect(line.message == "not started: requires 'Ghost', which is not a known service")
        #expect(host.scheduler.snapshot(of: "App")?.state == .idle)
        #expect(throws: ServiceError.self) { try host.scheduler.start("App") }
        await host.scheduler.shutdown()
    }

    @Test func aCycleIsAnErrorNamingEveryServiceInIt() async throws {
        let host = try await TestHost(probes: [
            ("A.so", "requires = [\"B\"]\n"),
            ("B.so", "requires = [\"C\"]\n"),
            ("C.so", "requires = [\"A\"]\n"),
            ("Free.so", ""),
        ])
        try await host.events.first("Free") { $0.isStarted }
        for (name, cycle) in [("A", "A -> B -> C -> A"), ("B", "B -> C -> A -> B"), ("C", "C -> A -> B -> C")] {
            let line = try await host.logs.waitFor { $0.service == name && $0.level == .error }
            #expect(line.message == "not started: its requirements form a cycle: \(cycle)")
            #expect(host.scheduler.snapshot(of: name)?.state == .idle)
        }
        await host.scheduler.shutdown()
    }
}
