import ArgumentParser

struct CtlRestartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart", abstract: "Stop and start services, picking up a changed plugin file, and wait until they run.")
    @OptionGroup var order: CtlOrder
    func run() async throws { try await order.run("restart") }
}
