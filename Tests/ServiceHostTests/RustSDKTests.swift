import Foundation
import Testing
@testable import ServiceHost

/// sdk/rust/servicehost-plugin: its example plugin, built with cargo
/// (offline: the crate has no dependencies) and run in the host. Skipped,
/// saying so, where cargo is not installed.
@Suite("Rust plugin SDK")
struct RustSDKTests {
    /// cargo on the PATH, or where rustup puts it.
    static let cargo: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = path.split(separator: ":").map { "\($0)/cargo" } + [NSHomeDirectory() + "/.cargo/bin/cargo"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    private static let crate = PluginBuilder.repositoryRoot.appendingPathComponent("sdk/rust/servicehost-plugin")

    /// Builds the example plugins once per test run (into a temporary target directory).
    private static let built: Result<[String: Data], any Error> = Result {
        guard let cargo else { throw HTTPGet.Failure(description: "no cargo") }
        let target = try TemporaryDirectory("rust-target")
        try PluginBuilder.run(["env", "CARGO_TARGET_DIR=\(target.path)", cargo, "build", "--offline", "--release", "--quiet",
                               "--manifest-path", crate.appendingPathComponent("Cargo.toml").path, "--example", "hello", "--example", "counter"])
        return ["hello": try Data(contentsOf: target.file("release/examples/libhello.so")),
                "counter": try Data(contentsOf: target.file("release/examples/libcounter.so"))]
    }

    private func run(_ sidecar: String, example: String = "hello") async throws -> (Scheduler, LogCapture, EventWaiter) {
        let library = try await Blocking.run { try Self.built.get()[example]! }
        let folder = try PluginFolder()
        _ = try folder.write([UInt8](library), as: "Hello.so")
        try folder.sidecar(for: "Hello.so", sidecar)
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let events = EventWaiter(scheduler)
        #expect(try await scheduler.addPlugins(directory: folder.path).isEmpty)
        scheduler.startAll()
        return (scheduler, logs, events)
    }

    /// The README's Rust plugin, built as a crate of its own against the SDK by path.
    @Test(.enabled(if: cargo != nil, "cargo is not installed: the README's Rust example is not built"))
    func theReadmeExampleBuilds() async throws {
        let readme = try String(contentsOf: PluginBuilder.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let source = try #require(readme.components(separatedBy: "```rust\n").dropFirst().first?.components(separatedBy: "\n```").first)
        let project = try TemporaryDirectory("readme-rust")
        try FileManager.default.createDirectory(at: project.file("src"), withIntermediateDirectories: true)
        try (source + "\n").write(to: project.file("src/lib.rs"), atomically: true, encoding: .utf8)
        try """
            [package]
            name = "hello"
            version = "0.1.0"
            edition = "2021"

            [lib]
            crate-type = ["cdylib"]

            [dependencies]
            servicehost-plugin = { path = "\(Self.crate.path)" }
            """.write(to: project.file("Cargo.toml"), atomically: true, encoding: .utf8)
        let cargo = try #require(Self.cargo)
        try await Blocking.run {
            try PluginBuilder.run(["env", "CARGO_TARGET_DIR=\(project.file("target").path)", cargo, "build", "--offline", "--quiet",
                                   "--manifest-path", project.file("Cargo.toml").path])
        }
        #expect(FileManager.default.fileExists(atPath: project.file("target/debug/libhello.so").path))
    }

    @Test(.enabled(if: cargo != nil, "cargo is not installed: the Rust SDK's example is not built"))
    func theExampleReadsItsConfigLogsAndFinishes() async throws {
        let (scheduler, logs, events) = try await run("interval_ms = 1\nrestart = \"never\"\n[config]\nwho = \"Rust\"\ntimes = 3\n")
        try await events.first("Hello") { $0 == .stopped(.finished) }
        #expect(logs.entries.filter { $0.service == "Hello" && $0.message.hasPrefix("Hello") }.map(\.message)
                == ["Hello, Rust! (1)", "Hello, Rust! (2)", "Hello, Rust! (3)"])
        #expect(scheduler.status(of: "Hello")?.version == "1.0.0")
        await scheduler.shutdown()
    }

    @Test(.enabled(if: cargo != nil, "cargo is not installed: the Rust SDK's example is not built"))
    func aPanicIsCaughtAtTheBoundaryLoggedAndRestarted() async throws {
        let (scheduler, logs, events) = try await run(
            "interval_ms = 1\nbackoff_initial_ms = 1\nbackoff_max_ms = 1\nrestart_limit = 0\n[config]\npanic_at = 2\n")
        try await events.first("Hello") { $0.isRestarting }
        try await events.next("Hello") { $0.isStarted }
        let panicked = try #require(logs.entries.first { $0.service == "Hello" && $0.message.hasPrefix("svc_loop panicked: ") })
        #expect(panicked.message == "svc_loop panicked: panic_at 2 reached (at examples/hello.rs:19)")
        #expect(panicked.level == .error)
        #expect(scheduler.status(of: "Hello")?.lastExit?.hasSuffix("(code -1)") == true)
        await scheduler.shutdown()
    }

    /// The counter example keeps its count (`save_state` on every loop,
    /// `kept_state` in `create`) through a restart.
    @Test(.enabled(if: cargo != nil, "cargo is not installed: the Rust SDK's example is not built"))
    func theCounterExampleCarriesItsCountThroughARestart() async throws {
        let (scheduler, logs, events) = try await run("interval_ms = 1\n", example: "counter")
        try await events.first("Hello") { $0.isStarted }
        #expect(logs.entries.contains { $0.service == "Hello" && $0.message == "starting at 0" })
        let count = try await countCarriedThroughRestart(of: "Hello", scheduler: scheduler, logs: logs)
        #expect(count >= 5, "the second run started at \(count)")
        await scheduler.shutdown()
    }
}
