import ArgumentParser

struct CtlStartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start services and wait until they run (or fail, or the timeout passes).")
    @OptionGroup var order: CtlOrder
    func run() async throws { try await order.run("start") }
}
