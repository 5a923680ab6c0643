import Foundation
import Testing
@testable import ServiceHost

/// Sidecars and configurations are bounded before anything trusts them: size,
/// nesting, and every duration.
@Suite("Sidecar limits")
struct SidecarLimitsTests {
    static let file = "/plugins/Echo.toml"
    static let msKeys = ["backoff_initial_ms", "backoff_max_ms", "delay_ms", "healthy_after_ms", "interval_ms",
                         "restart_window_ms", "start_timeout_ms", "stop_timeout_ms", "watchdog_ms"]

    private func failure(_ text: String) -> PluginError? {
        do {
            _ = try SidecarFile.parse(text, file: Self.file)
            return nil
        } catch {
            return error
        }
    }

    @Test func everyMillisecondsKeyIsBounded() throws {
        #expect(Self.msKeys.allSatisfy { SidecarFile.keys[$0] != nil })
        #expect(SidecarFile.keys.keys.filter { $0.hasSuffix("_ms") }.sorted() == Self.msKeys)
        for key in Self.msKeys {
            let error = try #require(failure("\(key) = 10000000000000"), "\(key)")
            #expect(error.reason == "key '\(key)' must be at most 2147483647 (about 24.8 days), found 10000000000000")
            #expect(failure("\(key) = 2147483647") == nil, "\(key)")
        }
    }

    @Test func aDeeplyNestedHeaderIsRefusedBeforeTOMLKitSeesIt() throws {
        // About 400 KB of `[config.a.a.a…]`: toml++ overflows its stack on it.
        let text = "[config" + String(repeating: ".a", count: 200_000) + "]\nx = 1\n"
        let error = try #require(failure(text))
        #expect(error.code == .invalidConfiguration)
        // The header has 200,001 parts; the key `x` below it is one level deeper.
        #expect(error.reason == "nests tables, arrays or dotted keys 200002 levels deep at line 2, more than the limit of \(Limits.maxSidecarNesting)")
    }

    @Test(arguments: [
        "config." + String(repeating: "a.", count: 5_000) + "a = 1",
        "[config]\nx = " + String(repeating: "[", count: 5_000) + String(repeating: "]", count: 5_000),
        "[config]\nx = " + String(repeating: "{ a = ", count: 5_000) + "1" + String(repeating: " }", count: 5_000),
    ])
    func deepDottedKeysArraysAndInlineTablesAreRefused(text: String) throws {
        let error = try #require(failure(text))
        #expect(error.reason.contains("more than the limit of \(Limits.maxSidecarNesting)"), "\(error.reason)")
    }

    @Test func ordinaryNestingDotsInStringsAndFloatsPass() throws {
        let text = """
            interval_ms = 10
            # a comment with [[[[ brackets ]]]] and a.b.c.d.e.f
            [config]
            url = "http://a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h.i.j"
            text = '''
            [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
            '''
            ratio = 1.5
            list = [[1, 2], [3.25, 4.5], { a.b.c = 1 }]
            [config.server.tls]
            cert.path.name = "x.pem"
            """
        let configuration = try SidecarFile.parse(text, file: Self.file)
        #expect(configuration.settings["server.tls.cert.path.name"] == "x.pem")
        #expect(configuration.settings["ratio"] == "1.5")
    }

    @Test func aSidecarOverTheSizeLimitIsRefusedBeforeItIsRead() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("Big.toml").path
        try "retries = 1\n".write(toFile: path, atomically: true, encoding: .utf8)
        try #require(truncate(path, off_t(Limits.maxSidecarSize + 1)) == 0)
        do {
            _ = try SidecarFile.load(path: path)
            Issue.record("a sidecar over the limit was read")
        } catch {
            #expect(error.file == path)
            #expect(error.reason == "is \(Limits.maxSidecarSize + 1) bytes, larger than the limit of \(Limits.maxSidecarSize) bytes for a sidecar")
        }
        let text = "retries = 1\n" + String(repeating: "#", count: Limits.maxSidecarSize)
        #expect(failure(text)?.reason.contains("larger than the limit") == true)
    }

    @Test func embeddersConfigurationsAreBoundedToo() async throws {
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let tooLong = ServiceConfiguration(watchdog: .milliseconds(10_000_000_000_000))
        #expect(tooLong.problem == "'watchdog_ms' must be at most 2147483647 ms (about 24.8 days), found \(Duration.milliseconds(10_000_000_000_000))")
        #expect(throws: ServiceError(.invalidConfiguration, service: "Native", reason: tooLong.problem!)) {
            try scheduler.add(BaseService(name: "Native", configuration: tooLong))
        }
        let folder = try PluginFolder()
        let file = try await folder.add(as: "P.so")
        #expect(throws: PluginError(.invalidConfiguration, file: file, reason: ServiceConfiguration(delay: .seconds(-1)).problem!)) {
            try scheduler.addPlugin(file: file, configuration: ServiceConfiguration(delay: .seconds(-1)))
        }
        await scheduler.shutdown()
    }

    @Test func backoffAtTheMaximumDoesNotOverflow() {
        var backoff = RestartBackoff(initial: Limits.maxDuration, maximum: Limits.maxDuration, healthyAfter: Limits.maxDuration)
        var delays: [Duration] = []
        for _ in 0..<80 { delays.append(backoff.nextDelay(afterRunning: .zero)) }
        #expect(delays.first == .zero)
        #expect(delays.dropFirst().allSatisfy { $0 == Limits.maxDuration })
        var small = RestartBackoff(initial: .milliseconds(1), maximum: Limits.maxDuration, healthyAfter: Limits.maxDuration)
        for _ in 0..<200 { _ = small.nextDelay(afterRunning: .zero) }
        #expect(small.nextDelay(afterRunning: .zero) == Limits.maxDuration)
        #expect(Duration.seconds(Int64.max).nanoseconds == .max)
        #expect(Duration.seconds(Int64.min).milliseconds == .min)
    }

    @Test func aServiceWithEveryDurationAtTheMaximumRuns() async throws {
        let maximum = Limits.maxDurationMilliseconds
        let keys = Self.msKeys.filter { $0 != "delay_ms" }.map { "\($0) = \(maximum)" }.joined(separator: "\n")
        let folder = try PluginFolder()
        try await folder.add(as: "Slow.so", sidecar: keys + "\n[config]\nlog_loops = true\n")
        try await folder.add(as: "Late.so", sidecar: "delay_ms = \(maximum)\n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        scheduler.startAll()
        try await logs.waitFor { $0.service == "Slow" && $0.message == "loop 1" }
        await scheduler.shutdown()
        #expect(logs.entries { $0.service == "Slow" && $0.message.hasPrefix("stop after") }.count == 1)
    }
}
