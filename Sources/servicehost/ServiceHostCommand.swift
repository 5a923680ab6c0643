import ArgumentParser

struct ServiceHostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "servicehost",
        abstract: "Load service plugins from shared libraries and supervise them.",
        version: ServiceHostVersion.current,
        subcommands: [RunCommand.self, CheckCommand.self, CtlCommand.self, NewCommand.self]
    )
}

enum ServiceHostVersion {
    static let current = "0.1.0"
}
