import ArgumentParser

struct CtlStopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop services; they stay stopped (across their requirements' restarts and SIGHUP) until started.")
    @OptionGroup var order: CtlOrder
    func run() async throws { try await order.run("stop") }
}
