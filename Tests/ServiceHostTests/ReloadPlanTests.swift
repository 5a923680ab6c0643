import Testing
@testable import ServiceHost

/// A reload's decisions as a pure value: the directory as found and the
/// services as they run, in; the steps, out.
@Suite("Reload plan")
struct ReloadPlanTests {
    private let directory = "/plugins"

    private func entry(_ name: String, sidecar: Bool = false) -> PluginDirectory.Entry {
        PluginDirectory.Entry(name: name, file: "\(directory)/lib\(name).so", sidecar: sidecar ? "\(directory)/\(name).toml" : nil)
    }

    private func running(_ name: String, configuration: ServiceConfiguration = .init(), fileChanged: Bool = false,
                         failed: Bool = false, stoppedByOrder: Bool = false) -> ReloadPlan.Running {
        ReloadPlan.Running(name: name, file: "\(directory)/lib\(name).so", configuration: configuration,
                           fileChanged: fileChanged, failed: failed, stoppedByOrder: stoppedByOrder)
    }

    @Test func eachKindOfDifferenceHasItsStep() {
        var faster = ServiceConfiguration()
        faster.interval = .milliseconds(10)
        let invalid = PluginError(.invalidConfiguration, file: "\(directory)/Broken.toml", reason: "line 1: unknown key 'intervl_ms'")
        let plan = ReloadPlan(
            found: [
                .init(entry: entry("New"), configuration: .success(.init())),
                .init(entry: entry("Same"), configuration: .success(.init())),
                .init(entry: entry("Tuned", sidecar: true), configuration: .success(faster)),
                .init(entry: entry("Rebuilt"), configuration: .success(.init())),
                .init(entry: entry("Gave"), configuration: .success(.init())),
                .init(entry: entry("Broken", sidecar: true), configuration: .failure(invalid)),
                .init(entry: entry("Parked"), configuration: .success(.init())),
                .init(entry: entry("ParkedTuned", sidecar: true), configuration: .success(faster)),
            ],
            running: [
                running("Same"), running("Tuned"), running("Rebuilt", fileChanged: true), running("Gave", failed: true),
                running("Broken"), running("Gone"), running("Parked", fileChanged: true, stoppedByOrder: true),
                running("ParkedTuned", stoppedByOrder: true),
            ],
            scanErrors: [PluginError(.duplicateName, file: "\(directory)/New.so", reason: "service name 'New' is already used by libNew.so")])
        #expect(plan.steps == [
            .refuse(.init(file: "\(directory)/New.so", reason: "service name 'New' is already used by libNew.so")),
            .remove("Gone"),
            .add(entry("New"), .init()),
            .keep("Same"),
            .reconfigure(entry("Tuned", sidecar: true), faster, start: true),
            .restart("Rebuilt"),
            .retry("Gave"),
            .refuse(.init(file: "\(directory)/Broken.toml", reason: "line 1: unknown key 'intervl_ms'")),
            .keep("Broken"),
            // Stopped by an order: a changed file waits for the next start; new values apply, unstarted.
            .keep("Parked"),
            .reconfigure(entry("ParkedTuned", sidecar: true), faster, start: false),
        ])
        let report = plan.report(dryRun: true)
        #expect(report.added == ["New"])
        #expect(report.changed == ["Tuned", "Rebuilt", "ParkedTuned"])
        #expect(report.removed == ["Gone"])
        #expect(report.unchanged == ["Same", "Broken", "Parked"])
        #expect(report.retried == ["Gave"])
        #expect(report.refused.map(\.file) == ["\(directory)/New.so", "\(directory)/Broken.toml"])
        #expect(report.summary == "1 added, 3 changed, 1 removed, 3 unchanged, 1 retried, 2 refused (dry run: nothing done)")
    }

    @Test func anotherFileClaimingARunningServicesNameIsRefusedAndTheServiceKept() {
        // Both files are there; the scan let Echo.so win the name, but libEcho.so runs.
        let other = PluginDirectory.Entry(name: "Echo", file: "\(directory)/Echo.so", sidecar: nil)
        let lost = PluginError(.duplicateName, file: "\(directory)/libEcho.so", reason: "service name 'Echo' is already used by Echo.so")
        let plan = ReloadPlan(found: [.init(entry: other, configuration: .success(.init()))],
                              running: [running("Echo")], scanErrors: [lost])
        #expect(plan.steps == [
            .refuse(.init(file: "\(directory)/Echo.so", reason: "service name 'Echo' is already used by \(directory)/libEcho.so; this file is ignored")),
            .keep("Echo"),
        ])
    }

    @Test func aPluginRenamedFromLibXToXIsRemovedAndAddedAgain() {
        let renamed = PluginDirectory.Entry(name: "Echo", file: "\(directory)/Echo.so", sidecar: nil)
        let plan = ReloadPlan(found: [.init(entry: renamed, configuration: .success(.init()))],
                              running: [running("Echo")], scanErrors: [])
        #expect(plan.steps == [.remove("Echo"), .add(renamed, .init())])
    }

    @Test func aHungServiceIsNotRestartedOrReplacedUntilItsCallReturns() {
        var faster = ServiceConfiguration()
        faster.interval = .milliseconds(10)
        var hung = running("Stuck", fileChanged: true)
        hung.hung = true
        let plan = ReloadPlan(found: [.init(entry: entry("Stuck", sidecar: true), configuration: .success(faster))],
                              running: [hung], scanErrors: [])
        #expect(plan.steps == [
            .refuse(.init(file: "\(directory)/libStuck.so",
                          reason: "changed, but its previous run is still inside the plugin (hung); left as it is until that call returns")),
            .keep("Stuck"),
        ])
    }

    @Test func aServiceInBackoffWithNothingChangedIsLeftToItsBackoff() {
        let plan = ReloadPlan(found: [.init(entry: entry("Flaky"), configuration: .success(.init()))],
                              running: [running("Flaky")], scanErrors: [])
        #expect(plan.steps == [.keep("Flaky")])
    }
}
