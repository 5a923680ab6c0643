import ArgumentParser
import Foundation
import ServiceHost
import ServiceHostControl

struct CtlReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make the services match the plugins directory (what SIGHUP does), and print what changed.",
        discussion: "Exits 1 when a file or sidecar was refused (the rest is done all the same).")

    @ParentCommand var ctl: CtlCommand

    @Flag(name: .long, help: "Only print what a reload would do.")
    var dryRun = false

    @Flag(name: .long, help: "Print the control API's JSON document.")
    var json = false

    func run() async throws {
        let report: ReloadReport
        do {
            // A reload may wait for services to stop and for new plugins' load-time scans.
            report = try await ctl.options.request(.POST, "/v1/reload\(dryRun ? "?dry_run=true" : "")", as: ReloadReport.self,
                                                   waiting: .seconds(120))
        } catch {
            throw error.exitCode
        }
        if json {
            FileHandle.standardOutput.write(try ControlDocument.encoder().encode(report))
            print()
        } else {
            print(report.summary)
            for (label, names) in [("added", report.added), ("changed", report.changed), ("removed", report.removed),
                                   ("retried", report.retried)] where !names.isEmpty {
                print("  \(label): \(names.joined(separator: ", "))")
            }
            for refusal in report.refused {
                print("  refused: \(refusal.file): \(refusal.reason)")
            }
        }
        if !report.refused.isEmpty { throw CtlExit.failed }
    }
}
