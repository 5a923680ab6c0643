import Benchmark
import CBaselines
import Foundation
import Logging
import ServiceHost
import ServiceHostControl
import ServiceHostMetrics

/// ServiceHost against the limits it is built on, measured in one run: loop
/// dispatch against a direct C call and a raw `ffi_call`; process restarts
/// against `posix_spawn` of a trivial C program; plus restart, reload, scale
/// and idle figures. `Benchmarks/run` runs them and writes docs/PERFORMANCE.md.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock],
        timeUnits: .nanoseconds,
        warmupIterations: 1,
        maxDuration: .seconds(3),
        maxIterations: 20
    )
    loopDispatch()
    restartLatency()
    reloadLatency()
    scaleAndIdleCost()
    idleFloor()
    watchLatency()
}

// MARK: 1. Loop dispatch

private func loopDispatch() {
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

    // The host and the raw ffi_call in turn, a million calls each per pair,
    // so that both see the same moment of this VM's noise (measured apart,
    // the raw call alone moves between 15 and 26 ns from run to run): the
    // ratio of each pair is the side-by-side figure.
    let paired = HostHolder()
    let pairedBaseline = BaselineHolder()
    Benchmark(
        "Loop dispatch: host and raw ffi_call in pairs",
        configuration: .init(
            metrics: [.custom("host (ns per call)"), .custom("raw ffi_call (ns per call)"),
                      .custom("raw ffi_call rate / host rate, per pair (%)")],
            warmupIterations: 1, maxIterations: 30,
            setup: {
                let folder = try Fixtures.folder("host-paired")
                try Fixtures.plugin("counted_loop.c", named: "Counted", in: folder,
                                    sidecar: "restart = \"never\"\n[config]\nloops = \(BenchmarkScalingFactor.mega.rawValue)\n")
                paired.current = try await HostUnderTest(plugins: folder.path, service: "Counted")
                pairedBaseline.current = try Baseline(try Fixtures.plugin("counted_loop.c", named: "Counted", in: Fixtures.folder("ffi-paired")))
            },
            teardown: {
                await paired.current?.scheduler.shutdown()
                paired.current = nil
                pairedBaseline.current = nil
            }
        )
    ) { benchmark in
        guard let current = paired.current, let baseline = pairedBaseline.current else { return }
        let calls = BenchmarkScalingFactor.mega.rawValue
        let hostBegan = baseline_monotonic_ns()
        try current.scheduler.start("Counted")
        await current.finished()
        let host = Double(baseline_monotonic_ns() - hostBegan) / Double(calls)
        let rawBegan = baseline_monotonic_ns()
        blackHole(baseline_ffi_calls(baseline.handle, Int64(calls)))
        let raw = Double(baseline_monotonic_ns() - rawBegan) / Double(calls)
        benchmark.measurement(.custom("host (ns per call)"), Int(host.rounded()))
        benchmark.measurement(.custom("raw ffi_call (ns per call)"), Int(raw.rounded()))
        benchmark.measurement(.custom("raw ffi_call rate / host rate, per pair (%)"), Int((raw / host * 100).rounded()))
    }

    // The same, while the control API answers a status request every 10 ms:
    // serving it must not touch the dispatch path.
    let polled = HostHolder()
    let poller = PollerHolder()
    Benchmark(
        "Loop dispatch: ServiceHost event loop, control API polled every 10 ms",
        configuration: .init(
            scalingFactor: .mega,
            setup: {
                let folder = try Fixtures.folder("host-polled")
                try Fixtures.plugin("counted_loop.c", named: "Counted", in: folder,
                                    sidecar: "restart = \"never\"\n[config]\nloops = \(BenchmarkScalingFactor.mega.rawValue)\n")
                let current = try await HostUnderTest(plugins: folder.path, service: "Counted")
                polled.current = current
                try await poller.start(current.scheduler, socket: folder.appendingPathComponent("control.sock").path)
            },
            teardown: {
                await poller.stop()
                await polled.current?.scheduler.shutdown()
                polled.current = nil
            }
        )
    ) { _ in
        guard let current = polled.current else { return }
        try current.scheduler.start("Counted")
        await current.finished()
    }
}

/// A control server over a scheduler, and a client asking it for the status
/// of every service every 10 ms.
final class PollerHolder: @unchecked Sendable {
    private var server: ControlServer?
    private var polling: Task<Void, Never>?

    func start(_ scheduler: Scheduler, socket: String) async throws {
        let api = ControlAPI(scheduler: scheduler, logs: ServiceLogRing(),
                             host: .init(version: "bench", pluginsDirectory: "/"), logger: Logger(label: "bench"))
        let server = ControlServer(configuration: .init(path: socket), api: api, logger: LogTap(marker: "\u{0}").logger)
        try await server.start()
        self.server = server
        polling = Task {
            let client = ControlClient(path: socket)
            while !Task.isCancelled {
                _ = try? await client.send(.GET, "/v1/services")
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    func stop() async {
        polling?.cancel()
        await polling?.value
        await server?.stop()
    }
}

// MARK: 2 and 3. Restart latency

private func restartLatency() {
    Benchmark(
        "Restart latency, thread mode",
        configuration: .init(
            metrics: [.custom("SVC_DONE to next svc_create (ns)"), .custom("SVC_DONE to first svc_loop (ns)")],
            warmupIterations: 0, maxIterations: 1
        )
    ) { benchmark in
        let tap = LogTap(marker: "restart-samples")
        let folder = try Fixtures.folder("restart")
        try Fixtures.plugin("restart_clock.c", named: "Restarts", in: folder, sidecar: """
            restart = "always"
            backoff_initial_ms = 0
            restart_limit = 0
            [config]
            samples = 10000
            samples_file = "\(folder.path)/samples"
            """)
        // A steady crash loop, of a file deployed earlier: for 2 s after a
        // file's last change the host compares its content at every restart
        // as well (a rewrite within one timestamp step keeps its identity;
        // some file systems stamp whole seconds), which reads and hashes the
        // plugin each time. Row 2 is the restart itself, so the file is let age first.
        try await Task.sleep(for: .milliseconds(2_100))
        let scheduler = try Scheduler(logger: tap.logger)
        try await scheduler.addPlugins(directory: folder.path)
        scheduler.startAll()
        _ = await tap.line()
        await scheduler.shutdown()
        let line = try String(contentsOfFile: folder.path + "/samples", encoding: .utf8)
        for (metric, field) in [("SVC_DONE to next svc_create (ns)", "create="), ("SVC_DONE to first svc_loop (ns)", "loop=")] {
            for sample in samples(field, in: line) {
                benchmark.measurement(.custom(metric), sample)
            }
        }
    }

    Benchmark(
        "Process start: posix_spawn + wait of a trivial C program",
        configuration: .init(metrics: [.wallClock], timeUnits: .microseconds, maxDuration: .seconds(3), maxIterations: 2000)
    ) { (benchmark: Benchmark, program: String) in
        for _ in benchmark.scaledIterations {
            blackHole(baseline_spawn_and_wait(program))
        }
    } setup: {
        Fixtures.withoutHarnessPreload()
        return try Fixtures.executable("trivial.c", named: "trivial", in: Fixtures.folder("spawn"))
    }

    Benchmark(
        "Restart latency, process mode",
        configuration: .init(
            metrics: [.custom("worker crash to new worker's first svc_loop (ns)")],
            warmupIterations: 0, maxIterations: 1
        )
    ) { benchmark in
        Fixtures.withoutHarnessPreload()
        let tap = LogTap(marker: "crash-samples")
        let folder = try Fixtures.folder("crash")
        try Fixtures.plugin("crash_clock.c", named: "Crashes", in: folder, sidecar: """
            isolation = "process"
            restart = "always"
            backoff_initial_ms = 0
            restart_limit = 0
            [config]
            samples = 2000
            clock_file = "\(folder.path)/clock"
            samples_file = "\(folder.path)/samples"
            """)
        let scheduler = try Scheduler(configuration: .init(workerExecutable: Fixtures.workerExecutable), logger: tap.logger)
        try await scheduler.addPlugins(directory: folder.path)
        scheduler.startAll()
        let line = await tap.line()
        await scheduler.shutdown()
        for sample in samples("crash-samples ", in: line) {
            benchmark.measurement(.custom("worker crash to new worker's first svc_loop (ns)"), sample)
        }
    }
}

// MARK: 4. Reload latency

private func reloadLatency() {
    for (label, size) in [("small", 16), ("1 MB", 1 << 20)] {
        reloadBenchmark("Reload latency, \(label) plugin", blobSize: size)
    }
    // The same small plugin keeping 1 MiB of state across its reloads (it
    // reads, checks and copies all of it in svc_create and saves it back in
    // svc_stop), in each isolation, beside the plain reload in process
    // isolation: the rows to compare with "Reload latency, small plugin".
    reloadBenchmark("Reload latency, small plugin, process isolation", blobSize: 16, isolation: "process")
    for isolation in ["thread", "process"] {
        reloadBenchmark("Reload latency with 1 MiB of kept state, \(isolation) isolation", blobSize: 16,
                        keptState: 1 << 20, isolation: isolation)
    }
}

/// Reloads a service 200 times, alternating two builds of `reload_clock.c`
/// overwritten in place, and measures from the end of each write to the new
/// version's first `svc_loop`. With `keptState`, the plugin keeps that many
/// bytes across its runs (every reload must have read them whole), and the
/// time is also split at the plugin's own stamps (see `reload_clock.c`).
private func reloadBenchmark(_ name: String, blobSize: Int, keptState: Int? = nil, isolation: String? = nil) {
    let total = "file replaced to new version's first svc_loop (ns)"
    let parts = keptState == nil ? [] : [
        "1. file replaced to old version's svc_stop (ns)",
        "2. state_save in svc_stop (ns)",
        "3. state_save returned to new version's svc_create (ns)",
        "4. svc_create reading the kept state (ns)",
        "5. svc_create's read done to first svc_loop (ns)",
    ]
    Benchmark(
        name,
        configuration: .init(
            metrics: [.custom(total)] + parts.map { .custom($0) },
            warmupIterations: 0, maxIterations: 1
        )
    ) { benchmark in
        if isolation == "process" { Fixtures.withoutHarnessPreload() }
        let tap = LogTap(marker: "first-loop")
        let builds = try Fixtures.folder("reload-builds")
        let versions = try ["1", "2"].map { version in
            try Data(contentsOf: URL(fileURLWithPath: Fixtures.plugin(
                "reload_clock.c", named: "v\(version)", in: builds,
                defines: ["RELOAD_VERSION=\"\(version)\"", "BLOB_SIZE=\(blobSize)"]
                    + (keptState.map { ["KEPT_STATE_SIZE=\($0)"] } ?? []))))
        }
        let folder = try Fixtures.folder("reload")
        let file = folder.appendingPathComponent("Reloads.so")
        try versions[0].write(to: file)
        var sidecar = "interval_ms = 1000\n"
        if let isolation { sidecar += "isolation = \"\(isolation)\"\n" }
        if keptState != nil { sidecar += "[config]\nclock_file = \"\(folder.path)/clock\"\n" }
        try sidecar.write(to: folder.appendingPathComponent("Reloads.toml"), atomically: true, encoding: .utf8)
        // With the fork server, so that every reload goes through the load-time scanner.
        let scheduler = try Scheduler(configuration: .init(workerExecutable: Fixtures.workerExecutable), logger: tap.logger)
        try await scheduler.addPlugins(directory: folder.path)
        scheduler.startAll()
        _ = checkReload(await tap.line(), round: 0, keptState: keptState)
        for round in 1...200 {
            // Replaced as `cp` does it (in place); the clock starts once the new file is there.
            let handle = try FileHandle(forWritingTo: file)
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: versions[round % 2])
            try handle.close()
            let replaced = baseline_monotonic_ns()
            try await scheduler.restart("Reloads")
            let line = await tap.line()
            let stamps = checkReload(line, round: round, keptState: keptState)
            guard let stamp = line.split(separator: " ").dropFirst().first.flatMap({ Int64($0) }) else { continue }
            benchmark.measurement(.custom(total), Int(stamp - replaced))
            if !parts.isEmpty, let stop = stamps["stop"], let saved = stamps["saved"], let create = stamps["create"],
               let read = stamps["read"] {
                for (metric, span) in zip(parts, [stop - replaced, saved - stop, create - saved, read - create, stamp - read]) {
                    benchmark.measurement(.custom(metric), Int(span))
                }
            }
        }
        await scheduler.shutdown()
    }
}

/// Stops the run unless `line` (a first-loop line of `reload_clock.c`) comes
/// from the build written before `round` and, with kept state, shows that the
/// run read all of what the previous run saved (the initial run reads
/// nothing). Returns the line's stamps by name (`stop`, `saved`, ...).
private func checkReload(_ line: String, round: Int, keptState: Int?) -> [String: Int64] {
    let fields = line.split(separator: " ")
    let version = round % 2 == 0 ? "1" : "2"
    precondition(fields.count >= 3 && fields[0] == "first-loop" && fields[2] == version,
                 "reload \(round): expected the first loop of version \(version), got: \(line)")
    guard let keptState else { return [:] }
    var named: [String: Substring] = [:]
    for field in fields.dropFirst(3) {
        let pair = field.split(separator: "=", maxSplits: 1)
        if pair.count == 2 { named[String(pair[0])] = pair[1] }
    }
    let expected: [String: Substring] = round == 0 ? ["kept": "0", "generation": "0", "state": "none"]
        : ["kept": "\(keptState)", "generation": "\(round)", "state": "ok"]
    precondition(expected.allSatisfy { named[$0.key] == $0.value },
                 "reload \(round): expected \(expected.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")), got: \(line)")
    return named.compactMapValues { Int64($0) }.filter { $0.value > 0 }
}

// MARK: 5 and 6. Scale and idle cost

private func scaleAndIdleCost() {
    Benchmark(
        "Scale: 1,000 plugins",
        configuration: .init(
            metrics: [
                .custom("run to all 1,000 started (µs)"),
                .custom("host memory per service, beyond the plugin's own (KiB)"),
                .custom("idle host CPU, 1,000 services at interval_ms = 1000 (µs per second)"),
                .custom("control API: first status of 1,000 services (µs)"),
                .custom("control API: status of 1,000 services (µs)"),
                .custom("servicehost ctl status of 1,000 services, whole command (µs)"),
                .custom("GET /metrics of 1,000 services over --http (µs)"),
                .custom("GET /metrics of 1,000 services, size (KiB)"),
            ],
            warmupIterations: 0, maxIterations: 1
        )
    ) { benchmark in
        let count = 1000
        let builds = try Fixtures.folder("scale-build")
        let plugin = try Data(contentsOf: URL(fileURLWithPath: Fixtures.plugin("counted_loop.c", named: "noop", in: builds)))
        let folder = try Fixtures.folder("scale")
        for index in 0..<count {
            try plugin.write(to: folder.appendingPathComponent(String(format: "S%04d.so", index)))
            try "interval_ms = 1000\n".write(to: folder.appendingPathComponent(String(format: "S%04d.toml", index)),
                                             atomically: false, encoding: .utf8)
        }
        let residentBefore = Measure.residentBytes()
        let began = baseline_monotonic_ns()
        let scheduler = try Scheduler(logger: LogTap(marker: "\u{0}").logger)
        let events = scheduler.events()
        try await scheduler.addPlugins(directory: folder.path)
        scheduler.startAll()
        var started = 0
        for await event in events {
            if case .started = event.kind { started += 1 }
            if started == count { break }
        }
        let allStarted = baseline_monotonic_ns()
        benchmark.measurement(.custom("run to all 1,000 started (µs)"), Int((allStarted - began) / 1000))

        let grown = Measure.residentBytes() - residentBefore
        let plugins = Measure.residentBytes(ofMappingsUnder: scheduler.runtimeDirectory)
        benchmark.measurement(.custom("host memory per service, beyond the plugin's own (KiB)"), (grown - plugins) / count / 1024)

        // Ten seconds of 1,000 services waking once a second to call a no-op.
        let cpuBefore = Measure.processCPUMicroseconds()
        let wallBefore = baseline_monotonic_ns()
        try await Task.sleep(for: .seconds(10))
        let cpu = Measure.processCPUMicroseconds() - cpuBefore
        let wall = Double(baseline_monotonic_ns() - wallBefore) / 1e9
        benchmark.measurement(.custom("idle host CPU, 1,000 services at interval_ms = 1000 (µs per second)"), Int(Double(cpu) / wall))

        // The control API over the same 1,000 services: the first answer
        // computes each image's SHA-256; the later ones are what an operator's
        // repeated `ctl status` costs. Then the whole `servicehost ctl status`
        // command, a process of its own.
        let socket = folder.appendingPathComponent("control.sock").path
        let api = ControlAPI(scheduler: scheduler, logs: ServiceLogRing(),
                             host: .init(version: "bench", pluginsDirectory: folder.path), logger: Logger(label: "bench"))
        let server = ControlServer(configuration: .init(path: socket), api: api, logger: LogTap(marker: "\u{0}").logger)
        try await server.start()
        let client = ControlClient(path: socket)
        for round in 0...50 {
            let began = baseline_monotonic_ns()
            let answer = try await client.send(.GET, "/v1/services")
            let took = Int((baseline_monotonic_ns() - began) / 1000)
            precondition(answer.status == 200 && answer.body.count > 100_000, "status of 1,000 services: \(answer.status)")
            benchmark.measurement(.custom(round == 0 ? "control API: first status of 1,000 services (µs)"
                                                     : "control API: status of 1,000 services (µs)"), took)
        }
        for _ in 0..<10 {
            let began = baseline_monotonic_ns()
            // Waited for on a thread of its own: blocking one of Swift's two
            // cooperative threads here would starve the server in this process.
            let status: Int32 = await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    let ctl = Process()
                    ctl.executableURL = URL(fileURLWithPath: Fixtures.workerExecutable)
                    ctl.arguments = ["ctl", "--socket", socket, "status"]
                    ctl.standardOutput = FileHandle.nullDevice
                    do { try ctl.run() } catch { continuation.resume(returning: -1); return }
                    ctl.waitUntilExit()
                    continuation.resume(returning: ctl.terminationStatus)
                }
            }
            precondition(status == 0, "ctl status exited \(status)")
            benchmark.measurement(.custom("servicehost ctl status of 1,000 services, whole command (µs)"),
                                  Int((baseline_monotonic_ns() - began) / 1000))
        }
        await server.stop()

        // A Prometheus scrape of the same 1,000 services through the --http
        // listener: the first one registers every series; then 50 as a
        // scraper sees them, request to last byte.
        let probe = ProbeServer(configuration: .init(host: "127.0.0.1", port: 0),
                                api: ProbeAPI(scheduler: scheduler, metrics: HostMetrics(scheduler: scheduler, version: "bench"),
                                              pulse: HostPulse()),
                                logger: LogTap(marker: "\u{0}").logger)
        let port = try await probe.start()
        for round in 0...50 {
            let began = baseline_monotonic_ns()
            let size: Int = await withCheckedContinuation { continuation in
                Thread.detachNewThread { continuation.resume(returning: Measure.httpGet(port: port, "/metrics")) }
            }
            precondition(size > 1_000_000, "a scrape of 1,000 services: \(size) bytes")
            if round > 0 {
                benchmark.measurement(.custom("GET /metrics of 1,000 services over --http (µs)"), Int((baseline_monotonic_ns() - began) / 1000))
                benchmark.measurement(.custom("GET /metrics of 1,000 services, size (KiB)"), size / 1024)
            }
        }
        await probe.stop()
        await scheduler.shutdown()
    }
}

// MARK: 7. A watched directory

private func watchLatency() {
    Benchmark(
        "Watch: new version renamed into place",
        configuration: .init(
            metrics: [.custom("rename() to new version's first svc_loop (ns)")],
            warmupIterations: 0, maxIterations: 1
        )
    ) { benchmark in
        let tap = LogTap(marker: "first-loop")
        let builds = try Fixtures.folder("watch-builds")
        let versions = try ["1", "2"].map { version in
            try Data(contentsOf: URL(fileURLWithPath: Fixtures.plugin(
                "reload_clock.c", named: "v\(version)", in: builds, defines: ["RELOAD_VERSION=\"\(version)\""])))
        }
        let folder = try Fixtures.folder("watch")
        let file = folder.appendingPathComponent("Watched.so")
        try versions[0].write(to: file)
        try "interval_ms = 1000\n".write(to: folder.appendingPathComponent("Watched.toml"), atomically: true, encoding: .utf8)
        let scheduler = try Scheduler(configuration: .init(workerExecutable: Fixtures.workerExecutable), logger: tap.logger)
        try await scheduler.addPlugins(directory: folder.path)
        scheduler.startAll()
        _ = await tap.line()
        // As `servicehost run --watch` does: a settled change reloads the directory.
        let watcher = try DirectoryWatcher(directory: folder.path, logger: tap.logger) { _ in
            Task { _ = try? await scheduler.reload(directory: folder.path) }
        }
        for round in 1...20 {
            // Written under a temporary name (ignored), then renamed into place.
            let staging = folder.appendingPathComponent(".Watched.so.tmp")
            try versions[round % 2].write(to: staging)
            let renamed = baseline_monotonic_ns()
            precondition(rename(staging.path, file.path) == 0, "rename failed")
            let line = await tap.line()
            guard let stamp = line.split(separator: " ").dropFirst().first.flatMap({ Int64($0) }) else { continue }
            benchmark.measurement(.custom("rename() to new version's first svc_loop (ns)"), Int(stamp - renamed))
        }
        watcher.stop()
        await scheduler.shutdown()
    }
}

private func idleFloor() {
    Benchmark(
        "Idle floor: 1,000 bare C threads sleeping 1 s",
        configuration: .init(metrics: [.custom("idle CPU, 1,000 threads waking once a second (µs per second)")],
                             warmupIterations: 0, maxIterations: 1)
    ) { benchmark in
        // The same timer slack the host gives a service with interval_ms = 1000.
        let used = baseline_idle_threads(1000, 1000, 10_000_000, 10)
        benchmark.measurement(.custom("idle CPU, 1,000 threads waking once a second (µs per second)"), Int(used))
    }
}

// MARK: Helpers

/// The numbers after `field` in a plugin's report line.
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
            throw CocoaError(.fileReadUnknown, userInfo: [
                NSLocalizedDescriptionKey: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
            ])
        }
        self.handle = handle
    }

    deinit { baseline_close(handle) }
}

/// Carries the host from a benchmark's setup to its body and teardown.
final class HostHolder: @unchecked Sendable {
    var current: HostUnderTest?
}

final class BaselineHolder: @unchecked Sendable {
    var current: Baseline?
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
        try await scheduler.addPlugins(directory: plugins)
    }

    /// Returns when the service's current run has ended.
    func finished() async {
        while let event = await events.next() {
            if event.service == service, case .stopped = event.kind { return }
        }
    }
}

/// Readings of this process from /proc and getrusage.
enum Measure {
    /// /proc files report size 0, so they are read as a stream.
    private static func read(_ path: String) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }

    static func residentBytes() -> Int {
        let fields = read("/proc/self/statm").split(separator: " ")
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// The resident memory of the mappings of files under `directory` (the plugins' own).
    static func residentBytes(ofMappingsUnder directory: String) -> Int {
        var total = 0
        var inside = false
        for line in read("/proc/self/smaps").split(separator: "\n") {
            if line.first?.isHexDigit == true, line.contains("-") {
                inside = line.contains(directory)
            } else if inside, line.hasPrefix("Rss:") {
                total += (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
            }
        }
        return total
    }

    /// One HTTP GET on the loopback, read to the end; the size of the answer (-1 on failure). Blocks.
    static func httpGet(port: Int, _ path: String) -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return -1 }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return -1 }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return -1 }
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            total += count
        }
        return total
    }

    static func processCPUMicroseconds() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000 + usage.ru_utime.tv_usec + usage.ru_stime.tv_usec
    }
}
