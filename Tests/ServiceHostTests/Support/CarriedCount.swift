@testable import ServiceHost

/// For a counter plugin that logs "starting at <n>" in its create and saves
/// its count on every loop: lets it loop at least `loops` times, restarts it,
/// and returns the count its second run started at.
func countCarriedThroughRestart(of name: String, scheduler: Scheduler, logs: LogCapture, loops: UInt64 = 5) async throws -> Int {
    // Each loop saves; no event marks a loop, so the count is polled, with a deadline.
    let deadline = ContinuousClock.now + .seconds(20)
    while (scheduler.service(named: name)?.loopsCompleted ?? 0) < loops {
        guard ContinuousClock.now < deadline else { throw TestFailure(description: "\(name) did not loop \(loops) times") }
        try await Task.sleep(for: .milliseconds(1))
    }
    try await scheduler.restart(name)
    let second = try await logs.waitFor(count: 2) { $0.service == name && $0.message.hasPrefix("starting at ") }
    return Int(second.message.dropFirst("starting at ".count)) ?? 0
}
