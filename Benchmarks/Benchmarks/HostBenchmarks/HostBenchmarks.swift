import Benchmark
import CBaselines
import Foundation
import ServiceHost

/// Loop dispatch and restart latency of the host, side by side with the
/// limits: a direct C call and a raw `ffi_call` of the same plugin function.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 1,
        maxDuration: .seconds(3),
        maxIterations: 20
    )

    // MARK: Loop dispatch: one svc_loop call of a no-op plugin, three ways.

    let dispatch = Benchmark.Configuration(scalingFactor: .mega)

    Benchmark("Loop dispatch: direct C function-pointer call", configuration: dispatch) { benchmark, baseline in
        blackHole(baseline_direct_calls(baseline.handle, Int64(benchmark.scaledIterations.count)))
    } setup: {
        try Baseline(try Fixtures.plugin("counted_loop.c", named: "Counted", in: Fixtures.folder("direct")))
    }

    Benchmark("Loop dispatch: raw ffi_call, prepared CIF", configuration: dispatch) { benchmark, baseline in
        blackHole(baseline_ffi_calls(baseline.handle, Int64(benchmark.scaledIterations.count)))
    } setup: {
        try Baseline(try Fixtures.plugin("counted_loop.c", named: "Counted", in: Fixtures.folder("ffi")))
    }

    let host = HostHolder()
    Benchmark(
        "Loop dispatch: ServiceHost event loop",
        configuration: .init(
            scalingFactor: .mega,
            setup: {
                let folder = try Fixtures.folder("host")
                try Fixtures.plugin("counted_loop.c", named: "Counted", in: folder,
                                    sidecar: "restart = \"never\"\n[config]\nloops = \(BenchmarkScalingFactor.mega.rawValue)\n")
                host.current = try await HostUnderTest(plugins: folder.path, service: "Counted")
            },
            teardown: {
                await host.current?.scheduler.shutdown()
                host.current = nil
            }
        )
    ) { _ in
        // One run of the service: create, a million loops through the host's
        // own path (BaseService loop, stop checks, libffi), SVC_DONE, stop.
        guard let current = host.current else { return }
        try current.scheduler.start("Counted")
        await current.finished()
    }

    // MARK: Restart latency, thread mode.

    Benchmark(
        "Restart latency, thread mode",
        configuration: .init(
            metrics: [.custom("SVC_DONE to next svc_create (ns)"), .custom("SVC_DONE to first svc_loop (ns)")],
            warmupIterations: 0, maxIterations: 1
        )
    ) { benchmark in
        let tap = LogTap(marker: "restart-samples")
        let folder = try Fixtures.folder("restart")
        try Fixtures.plugin("restart_clock.c", named: "Restarts", in: folder,
                            sidecar: "restart = \"always\"\nbackoff_initial_ms = 0\n[config]\nsamples = 10000\n")
        let scheduler = try Scheduler(logger: tap.logger)
        try scheduler.addPlugins(directory: folder.path)
        scheduler.startAll()
        let line = await tap.line()
        await scheduler.shutdown()
        for (metric, field) in [("SVC_DONE to next svc_create (ns)", "create="), ("SVC_DONE to first svc_loop (ns)", "loop=")] {
            for sample in samples(field, in: line) {
                benchmark.measurement(.custom(metric), sample)
            }
        }
    }
}

/// The numbers after `field` in the plugin's report line.
private func samples(_ field: String, in line: String) -> [Int] {
    guard let range = line.range(of: field) else { return [] }
    let list = line[range.upperBound...].prefix { $0 != " " }
    return list.split(separator: ",").compactMap { Int($0) }
}

/// A plugin opened directly, for the C baselines.
final class Baseline: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    init(_ path: String) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard let handle = baseline_open(path, &error, Int32(error.count)) else {
            throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)])
        }
        self.handle = handle
    }

    deinit { baseline_close(handle) }
}

/// Carries the host from a benchmark's setup to its body and teardown.
final class HostHolder: @unchecked Sendable {
    var current: HostUnderTest?
}

/// A scheduler over a folder of plugins, and a way to await one service's run.
final class HostUnderTest: @unchecked Sendable {
    let scheduler: Scheduler
    private var events: AsyncStream<ServiceEvent>.AsyncIterator
    private let service: String

    init(plugins: String, service: String) async throws {
        scheduler = try Scheduler(logger: LogTap(marker: "\u{0}").logger)
        events = scheduler.events().makeAsyncIterator()
        self.service = service
        try scheduler.addPlugins(directory: plugins)
    }

    /// Returns when the service's current run has ended.
    func finished() async {
        while let event = await events.next() {
            if event.service == service, case .stopped = event.kind { return }
        }
    }
}
