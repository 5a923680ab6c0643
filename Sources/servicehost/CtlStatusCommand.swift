import ArgumentParser
import Foundation
import ServiceHost
import ServiceHostControl

struct CtlStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show how the services stand: one line each, like `systemctl list-units`.",
        discussion: "Exits 3 when a listed service is not running, 4 when one is unknown."
    )

    @ParentCommand var ctl: CtlCommand
    var options: CtlOptions { ctl.options }

    @Argument(help: "The services to show (default: all).")
    var names: [String] = []

    @Flag(name: .long, help: "Print the control API's JSON document instead of a table.")
    var json = false

    func run() async throws {
        var statuses: [ServiceStatus] = []
        var unknown = false
        do {
            if names.isEmpty {
                statuses = try await options.request(.GET, "/v1/services", as: ControlDocument.Services.self).services
            } else {
                for name in names {
                    do {
                        statuses.append(try await options.request(.GET, "/v1/services/\(CtlOptions.segment(name))",
                                                                   as: ServiceStatus.self))
                    } catch where error.exitCode == CtlExit.unknown {
                        unknown = true
                    }
                }
            }
        } catch {
            throw error.exitCode
        }
        if json {
            let data = try ControlDocument.encoder().encode(ControlDocument.Services(services: statuses))
            FileHandle.standardOutput.write(data)
            print()
        } else if !statuses.isEmpty {
            print(Self.table(statuses, now: Date()), terminator: "")
        }
        if unknown { throw CtlExit.unknown }
        if statuses.contains(where: { $0.state != .running }) { throw CtlExit.notRunning }
    }

    /// One line per service: name, state, pid, how long, restarts, last error.
    static func table(_ statuses: [ServiceStatus], now: Date) -> String {
        let rows = [["NAME", "STATE", "PID", "FOR", "RESTARTS", "LAST ERROR"]] + statuses.map { status in
            [status.name, status.state.rawValue, status.pid.map(String.init) ?? "-", timing(of: status, now: now),
             String(status.restarts), shortened(status.failure ?? status.lastError ?? "-", to: 60)]
        }
        let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return zip(rows.indices, rows).map { index, row in
            let line = (0..<5).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                + "  " + row[5]
            return index == 0 ? line : line + kept(statuses[index - 1])
        }.joined(separator: "\n") + "\n"
    }

    /// A line under a service that keeps something across runs: what.
    static func kept(_ status: ServiceStatus) -> String {
        var parts: [String] = []
        if !status.keptDescriptors.isEmpty {
            parts.append("descriptors \(status.keptDescriptors.joined(separator: ", "))")
        }
        if status.keptStateBytes > 0 { parts.append("\(status.keptStateBytes) bytes of state") }
        return parts.isEmpty ? "" : "\n  kept: " + parts.joined(separator: "; ")
    }

    /// Uptime while running, the time left in a backoff, else how long it has been in its state.
    static func timing(of status: ServiceStatus, now: Date) -> String {
        if let left = status.backoffRemaining { return "restart in \(duration(left))" }
        if let uptime = status.uptime { return duration(uptime) }
        return duration(max(0, now.timeIntervalSince(status.since)))
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds)
        switch whole {
        case ..<60: return seconds < 10 ? String(format: "%.1fs", seconds) : "\(whole)s"
        case ..<3600: return "\(whole / 60)m \(whole % 60)s"
        case ..<86400: return "\(whole / 3600)h \(whole % 3600 / 60)m"
        default: return "\(whole / 86400)d \(whole % 86400 / 3600)h"
        }
    }

    static func shortened(_ text: String, to length: Int) -> String {
        let line = text.split(separator: "\n").first.map(String.init) ?? text
        return line.count <= length ? line : String(line.prefix(length - 1)) + "…"
    }
}
