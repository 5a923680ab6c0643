import ArgumentParser
import Foundation
import ServiceHost

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check plugin files or plugins directories as `run` would load them, without starting them.",
        discussion: """
            A directory is checked as `run` would use it: its permissions, duplicate names, every sidecar, \
            every plugin, and the `requires` graph. Plugins are loaded only in throwaway processes, never in \
            this one. Exits 0 only when `run` would load everything.
            """
    )

    @Argument(help: "The plugin files or plugins directories to check.")
    var paths: [String]

    @Option(name: .long, help: "The largest plugin file to load, in bytes (default 512 MiB).")
    var maxPluginSize: Int64 = Limits.defaultMaxPluginSize

    func validate() throws {
        guard maxPluginSize > 0 else { throw ValidationError("--max-plugin-size must be positive.") }
        guard !paths.isEmpty else { throw ValidationError("Name at least one plugin file or directory to check.") }
    }

    func run() throws {
        let checker = try PluginChecker(limits: Limits(maxPluginSize: maxPluginSize))
        defer { checker.finish() }
        var allLoad = true
        for path in paths {
            var isDirectory: ObjCBool = false
            let findings = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
                ? checker.check(directory: path) : [checker.finding(for: path)]
            for finding in findings {
                if finding.refused { allLoad = false }
                print("\(finding.file): \(finding.message)")
            }
        }
        if !allLoad { throw ExitCode.failure }
    }
}
