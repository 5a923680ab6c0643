import ArgumentParser
import Foundation
import ServiceHostControl

struct CtlMetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print the host's metrics in Prometheus' text format (what `run --http` serves at /metrics).")

    @ParentCommand var ctl: CtlCommand

    func run() async throws {
        let body: Data
        do {
            body = try await ctl.options.send(.GET, "/v1/metrics")
        } catch {
            throw error.exitCode
        }
        FileHandle.standardOutput.write(body)
    }
}
