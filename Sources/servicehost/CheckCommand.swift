import ArgumentParser
import ServiceHost

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check that plugin files load as the host would load them, without starting them."
    )

    @Argument(help: "The plugin files to check.")
    var files: [String]

    @Option(name: .long, help: "The largest plugin file to load, in bytes (default 512 MiB).")
    var maxPluginSize: Int64 = Limits.defaultMaxPluginSize

    func validate() throws {
        guard maxPluginSize > 0 else { throw ValidationError("--max-plugin-size must be positive.") }
        guard !files.isEmpty else { throw ValidationError("Name at least one plugin file to check.") }
    }

    func run() throws {
        let checker = try PluginChecker(limits: Limits(maxPluginSize: maxPluginSize))
        var allLoad = true
        for file in files {
            switch checker.check(file: file) {
            case .success(let report):
                print("\(file): OK, version \(report.version ?? "(none)")\(report.containsSwiftCode ? ", Swift image" : "")")
            case .failure(let error):
                allLoad = false
                print("\(file): FAILED [\(error.code)]: \(error.reason)")
            }
        }
        if !allLoad { throw ExitCode.failure }
    }
}
