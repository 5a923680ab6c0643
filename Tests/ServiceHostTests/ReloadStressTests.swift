import Foundation
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

private protocol NeverConformedTo {}
private struct Probe: CustomStringConvertible { var description: String { "probe" } }

/// Many reloads in one process: Swift images stay loaded (and dynamic casts
/// keep working), C images are unloaded (and mappings do not grow).
@Suite("Reload stress", .serialized)
struct ReloadStressTests {
    /// Gives `file` a new modification time, so that the next start sees a changed file.
    private func touch(_ file: String, serial: Int) {
        var times = [timespec(tv_sec: 1_700_000_000 + serial, tv_nsec: 0), timespec(tv_sec: 1_700_000_000 + serial, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, file, &times, 0) == 0)
    }

    /// The distinct files under `directory` mapped into this process.
    private func mappedImages(under directory: String) throws -> Set<String> {
        // /proc files report size 0, so read them as a stream rather than by size.
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps"))
        defer { try? handle.close() }
        let maps = String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self)
        var images = Set<String>()
        for line in maps.split(separator: "\n") {
            guard let start = line.range(of: directory) else { continue }
            images.insert(String(line[start.lowerBound...]))
        }
        return images
    }

    /// Dynamic casts scan the conformance records of every loaded image: a
    /// cast that fails walks all of them, which is what crashes when a Swift
    /// image was unloaded under the runtime.
    private func dynamicCasts() -> Bool {
        let values: [Any] = [Probe(), 42, "text", [1, 2]]
        var conforming = 0
        for value in values {
            if value is NeverConformedTo { conforming += 100 }
            if value is CustomStringConvertible { conforming += 1 }
        }
        return conforming == 4
    }

    /// A Swift plugin: the test fixture with its own glue, or the Swift
    /// SDK's example, Plugins/Greeter (a ServicePlugin type exported by
    /// #servicePlugin), as SwiftPM built it.
    enum SwiftPlugin: String, CaseIterable, Sendable {
        case glue = "SwiftProbe"
        case sdk = "Greeter"

        func install(as file: URL) async throws {
            switch self {
            case .glue: _ = try await Blocking.run { try PluginBuilder.buildSwift("swift_probe.swift", to: file, moduleName: "SwiftProbe") }
            case .sdk: try FileManager.default.copyItem(at: try SwiftSDKFixture.greeter, to: file)
            }
        }
    }

    @Test(.loadsTheMachine, arguments: SwiftPlugin.allCases)
    func aSwiftPluginReloadedAHundredTimesWithDynamicCastsInBetween(plugin: SwiftPlugin) async throws {
        let folder = try PluginFolder()
        let name = plugin.rawValue
        let file = folder.directory.file("\(name).so")
        try await plugin.install(as: file)
        try folder.sidecar(for: "\(name).so", "interval_ms = 1000\n")
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let events = EventWaiter(scheduler)
        try await scheduler.addPlugin(file: file.path)
        scheduler.startAll()
        try await events.next(name) { $0.isStarted }
        for serial in 1...100 {
            touch(file.path, serial: serial)
            try await scheduler.restart(name)
            try await events.next(name) { $0.isReloaded }
            try await events.next(name) { $0.isStarted }
            #expect(dynamicCasts())
        }
        #expect(scheduler.snapshot(of: name)?.metadata.starts == 101)
        // Every Swift image stays mapped: none was dlclosed.
        #expect(try mappedImages(under: scheduler.runtimeDirectory).count >= 101)
        await scheduler.shutdown()
        #expect(dynamicCasts())
    }

    @Test(.loadsTheMachine) func aCPluginReloadedAThousandTimesDoesNotGrowTheMappedImages() async throws {
        let folder = try PluginFolder()
        let file = try await folder.add(as: "C.so")
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let events = EventWaiter(scheduler)
        try await scheduler.addPlugin(file: file)
        scheduler.startAll()
        try await events.next("C") { $0.isStarted }
        for serial in 1...1_000 {
            touch(file, serial: serial)
            try await scheduler.restart("C")
            try await events.next("C") { $0.isReloaded }
            try await events.next("C") { $0.isStarted }
        }
        #expect(scheduler.snapshot(of: "C")?.metadata.starts == 1_001)
        // Only the image in use is mapped; the thousand before it were unloaded.
        let mapped = try mappedImages(under: scheduler.runtimeDirectory)
        #expect(mapped.count == 1, "\(mapped)")
        // And their private copies are gone from the runtime directory.
        #expect(try FileManager.default.contentsOfDirectory(atPath: scheduler.runtimeDirectory).filter(StaleRuntimeDirectories.isCopy).count == 1)
        await scheduler.shutdown()
    }
}
