import ArgumentParser

struct CtlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Steer a running servicehost through its control socket.",
        discussion: """
            Exit codes: 0 success; 1 the command failed (an order refused, a wait that \
            did not reach its state); 2 usage error; 3 (status) a listed service is not \
            running; 4 an unknown service, or no host answers at the socket.
            """,
        subcommands: [CtlStatusCommand.self, CtlStartCommand.self, CtlStopCommand.self, CtlRestartCommand.self,
                      CtlLogsCommand.self, CtlReloadCommand.self, CtlMetricsCommand.self]
    )

    @OptionGroup var options: CtlOptions
}

/// The exit codes of `servicehost ctl`, as supervisorctl's and LSB's.
enum CtlExit {
    static let failed = ExitCode(1)
    static let usage = ExitCode(2)
    static let notRunning = ExitCode(3)
    static let unknown = ExitCode(4)
}
