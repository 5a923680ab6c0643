// Greeter -- a service written in Swift with the ServiceHostPlugin SDK: a
// type, not pointer glue. Every loop it logs "Hello, <who>!", with `who`
// from Greeter.toml's [config]; `times` (optional) makes it finish after
// that many greetings.

import ServiceHostPlugin

struct Greeter: ServicePlugin {
    let greeting: String
    let times: Int?
    var greeted = 0

    init(context: PluginContext) throws {
        greeting = "Hello, \(context.config["who"] ?? "world")!"
        times = try context.config.int("times")
    }

    mutating func loop(context: PluginContext) throws -> LoopResult {
        context.logger.info("\(greeting)")
        greeted += 1
        return greeted == times ? .done : .continue
    }
}

#servicePlugin(Greeter.self, version: "1.0.0")
