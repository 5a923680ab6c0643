import ArgumentParser
import ServiceHost

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check that plugin files load as the host would load them, without starting them."
    )

    @Argument(help: "The plugin files to check.")
    var files: [String]

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("Name at least one plugin file to check.") }
    }

    func run() throws {
        let checker = try PluginChecker()
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
