import Foundation
import Synchronization
import Testing
@testable import ServiceHost

/// Plugin files that are not regular files, or are far too large, are refused
/// with a reason naming them, without blocking, allocating their size or
/// stopping the other plugins.
@Suite("File inputs")
struct FileInputTests {
    /// Runs `body` on its own thread. Should it block (on a FIFO among
    /// `fifos`), the test fails instead of hanging: after a generous guard the
    /// FIFOs are opened for writing and closed, which releases a reader stuck
    /// in `open()`. The guard is not a time bound on the work, only on a hang.
    private func withoutBlocking<T: Sendable>(on fifos: [String], _ body: @escaping @Sendable () throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<T, any Error>?>(nil)
        let thread = Thread {
            let outcome = Result { try body() }
            result.withLock { $0 = outcome }
            done.signal()
        }
        thread.start()
        if done.wait(timeout: .now() + .seconds(20)) == .timedOut {
            Issue.record("blocked on one of \(fifos)")
            for fifo in fifos {
                let descriptor = open(fifo, O_WRONLY | O_NONBLOCK)
                if descriptor >= 0 { close(descriptor) }
            }
            done.wait()
        }
        return try result.withLock { $0! }.get()
    }

    @Test func aFIFONamedLikeAPluginIsRefusedWithoutBlocking() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Good.so", sidecar: "[config]\nlog_loops = true\n")
        let fifo = folder.directory.file("libPipe.so").path
        try #require(mkfifo(fifo, 0o600) == 0)
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        let errors = try withoutBlocking(on: [fifo]) { try scheduler.addPlugins(directory: folder.path) }
        #expect(errors.count == 1, "\(errors)")
        let error = try #require(errors.first)
        #expect(error.file == fifo)
        #expect(error.code == .unreadable)
        #expect(error.reason == "is not a regular file (a FIFO)")
        #expect(logs.entries { $0.level == .error && $0.message.contains(fifo) && $0.message.contains("not a regular file") }.count == 1)
        scheduler.startAll()
        try await logs.waitFor { $0.service == "Good" && $0.message == "loop 3" }
        await scheduler.shutdown()
    }

    @Test func aFIFOAddedBeforeSIGHUPIsRefusedWithoutBlocking() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Good.so", sidecar: "[config]\nlog_loops = true\n")
        let logs = LogCapture()
        let scheduler = try Scheduler(logger: logs.logger)
        try await scheduler.addPlugins(directory: folder.path)
        scheduler.startAll()
        let fifo = folder.directory.file("Late.so").path
        try #require(mkfifo(fifo, 0o600) == 0)
        let sidecarFIFO = folder.directory.file("Later.toml").path
        try #require(mkfifo(sidecarFIFO, 0o600) == 0)
        try await folder.add(as: "Later.so")
        try await folder.add(as: "Fine.so", sidecar: "[config]\nlog_loops = true\n")
        let (started, errors) = try withoutBlocking(on: [fifo, sidecarFIFO]) {
            try scheduler.startNewPlugins(directory: folder.path)
        }
        #expect(started == ["Fine"])
        #expect(Set(errors.map(\.file)) == [fifo, sidecarFIFO], "\(errors)")
        #expect(errors.allSatisfy { $0.reason.contains("not a regular file") }, "\(errors)")
        try await logs.waitFor { $0.service == "Fine" && $0.message == "loop 3" }
        await scheduler.shutdown()
    }

    /// A Unix socket cannot be opened at all, and a device opens without
    /// blocking; both are refused with what they are, plugins and sidecars alike.
    @Test func aSocketAndADeviceNamedLikePluginsOrSidecarsAreRefusedWithWhatTheyAre() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "Good.so", sidecar: "[config]\nlog_loops = true\n")
        try await folder.add(as: "Configured.so")
        let socketPlugin = folder.directory.file("libSocket.so").path
        let socketSidecar = folder.directory.file("Configured.toml").path
        for path in [socketPlugin, socketSidecar] { try bindUnixSocket(at: path) }
        let device = folder.directory.file("libDevice.so").path
        try FileManager.default.createSymbolicLink(atPath: device, withDestinationPath: "/dev/null")
        let logs = LogCapture()
        let scheduler = try Scheduler(configuration: .init(allowInsecurePlugins: true), logger: logs.logger)
        let errors = try await scheduler.addPlugins(directory: folder.path)
        let reasons = Dictionary(errors.map { ($0.file, $0.reason) }, uniquingKeysWith: { first, _ in first })
        #expect(reasons == [socketPlugin: "is not a regular file (a socket)",
                            socketSidecar: "is not a regular file (a socket)",
                            device: "is not a regular file (a character device)"], "\(errors)")
        scheduler.startAll()
        try await logs.waitFor { $0.service == "Good" && $0.message == "loop 3" }
        await scheduler.shutdown()
    }

    private func bindUnixSocket(at path: String) throws {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path.utf8.prefix(buffer.count - 1))
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0, "bind \(path): \(errno)")
    }

    @Test func checkRefusesAFIFOWithoutBlocking() throws {
        let directory = try TemporaryDirectory("check")
        let fifo = directory.file("libPipe.so").path
        try #require(mkfifo(fifo, 0o600) == 0)
        let result = try withoutBlocking(on: [fifo]) { try PluginChecker(executable: HostProcess.binary.path).check(file: fifo) }
        guard case .failure(let error) = result else {
            Issue.record("a FIFO passed the check")
            return
        }
        #expect(error.file == fifo)
        #expect(error.reason == "is not a regular file (a FIFO)")
    }

    @Test(arguments: [Int64(4) << 30, Int64(64) << 30])
    func aSparseHugeFileIsRefusedBeforeItIsRead(size: Int64) async throws {
        let folder = try PluginFolder()
        let path = try folder.write([0x7F, 0x45, 0x4C, 0x46], as: "Huge.so")
        try #require(truncate(path, off_t(size)) == 0)
        try await folder.add(as: "Good.so")
        let scheduler = try Scheduler(logger: LogCapture().logger)
        let errors = try await scheduler.addPlugins(directory: folder.path)
        let error = try #require(errors.first)
        #expect(errors.count == 1)
        #expect(error.file == path)
        #expect(error.reason == "is \(size) bytes, larger than the limit of \(Limits.defaultMaxPluginSize) bytes for a plugin file")
        #expect(scheduler.snapshot().map(\.name) == ["Good"])
        await scheduler.shutdown()
    }

    @Test func theLimitOnPluginSizeIsConfigurable() async throws {
        let folder = try PluginFolder()
        let path = try await folder.add(as: "Good.so")
        let size = try #require(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64)
        let tight = try Scheduler(configuration: .init(limits: Limits(maxPluginSize: size - 1)), logger: LogCapture().logger)
        let error = try #require(try await tight.addPlugins(directory: folder.path).first)
        #expect(error.reason.contains("larger than the limit of \(size - 1) bytes"))
        let exact = try Scheduler(configuration: .init(limits: Limits(maxPluginSize: size)), logger: LogCapture().logger)
        #expect(try await exact.addPlugins(directory: folder.path).isEmpty)
        await tight.shutdown()
        await exact.shutdown()
    }
}
