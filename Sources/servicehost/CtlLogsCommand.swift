import ArgumentParser
import Foundation
import ServiceHostControl

struct CtlLogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a service's recent log lines, kept in the host's memory (no log file needed).")

    @ParentCommand var ctl: CtlCommand
    var options: CtlOptions { ctl.options }

    @Argument(help: "The service.")
    var name: String

    @Option(name: [.customShort("n"), .customLong("lines")], help: "How many of the most recent lines.")
    var lines = 50

    @Flag(name: .shortAndLong, help: "Go on printing new lines as they come, until interrupted.")
    var follow = false

    func validate() throws {
        guard (1...100_000).contains(lines) else { throw ValidationError("-n must be from 1 to 100000.") }
    }

    func run() async throws {
        let path = "/v1/services/\(CtlOptions.segment(name))/logs"
        do {
            var last = try await print(options.request(.GET, "\(path)?lines=\(lines)", as: ControlDocument.Logs.self), after: 0)
            while follow {
                // A long poll: the host answers as soon as a line comes, or after the wait with none.
                let wait = 25_000
                last = try await print(options.request(.GET, "\(path)?lines=100000&after=\(last)&wait_ms=\(wait)",
                                                       as: ControlDocument.Logs.self, waiting: .milliseconds(wait)), after: last)
            }
        } catch {
            throw error.exitCode
        }
    }

    /// Prints the lines and returns the last sequence number seen.
    private func print(_ document: ControlDocument.Logs, after last: UInt64) -> UInt64 {
        let formatter = ISO8601DateFormatter()
        var text = ""
        for line in document.lines {
            text += "\(formatter.string(from: line.time)) \(line.level) \(line.message)\n"
        }
        FileHandle.standardOutput.write(Data(text.utf8))
        return document.lines.last?.sequence ?? last
    }
}
