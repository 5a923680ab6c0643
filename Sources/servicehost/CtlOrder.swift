import ArgumentParser
import Foundation
import ServiceHost
import ServiceHostControl

/// What `ctl start`, `stop` and `restart` share: one order per name, each
/// waited for unless `--no-wait`, one line of outcome each.
struct CtlOrder: ParsableArguments {
    @ParentCommand var ctl: CtlCommand
    var options: CtlOptions { ctl.options }

    @Argument(help: "The services.")
    var names: [String]

    @Flag(name: .long, help: "Return once the order is given, without waiting for the service to reach its state.")
    var noWait = false

    @Option(name: .long, help: "How long to wait for each service to reach its state, in seconds.")
    var timeout: Double = 30

    func validate() throws {
        guard !names.isEmpty else { throw ValidationError("Name at least one service.") }
        guard timeout > 0, timeout <= Double(Int32.max) / 1000 else { throw ValidationError("--timeout must be positive.") }
    }

    /// Gives `verb` to each service; exits 4 if one is unknown, 1 if one failed.
    func run(_ verb: String) async throws {
        var worst: ExitCode?
        for name in names {
            let wait = noWait ? "" : "?wait=true&timeout_ms=\(Int(timeout * 1000))"
            do {
                let order = try await options.request(.POST, "/v1/services/\(CtlOptions.segment(name))/\(verb)\(wait)",
                                                      as: ControlDocument.Order.self, waiting: noWait ? .zero : .seconds(timeout))
                let status = order.service
                if order.reached == false {
                    CtlOptions.report("\(name): did not reach its state: \(status.state.rawValue)"
                        + (status.failure ?? status.lastError).map { " (\($0))" }.orEmpty)
                    worst = worst ?? CtlExit.failed
                } else {
                    print("\(name): \(status.state.rawValue)")
                }
            } catch {
                worst = error.exitCode == CtlExit.unknown ? CtlExit.unknown : (worst ?? error.exitCode)
            }
        }
        if let worst { throw worst }
    }
}

private extension Optional where Wrapped == String {
    var orEmpty: String { self ?? "" }
}
