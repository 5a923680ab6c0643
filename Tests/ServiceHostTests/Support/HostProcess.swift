import Foundation
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// The built `servicehost` binary, run as a child process whose output the
/// test reads line by line.
final class HostProcess: @unchecked Sendable {
    /// The binary SwiftPM built next to the test bundle.
    static var binary: URL {
        get throws {
            var candidates: [URL] = []
            if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
            candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
            candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
            for directory in candidates {
                let binary = directory.appendingPathComponent("servicehost")
                if FileManager.default.isExecutableFile(atPath: binary.path) { return binary }
            }
            throw HostProcessError(description: "servicehost binary not found near \(candidates.map(\.path))")
        }
    }

    struct HostProcessError: Error, CustomStringConvertible { let description: String }

    private let process = Process()
    private let output: FileHandle
    private let controlDirectory: TemporaryDirectory
    /// Where a `run` host serves its control API (unless the test named another).
    let controlSocket: String
    private let lock = NSLock()
    private var text = ""
    private var waiters: [(String, Int, CheckedContinuation<Void, Never>)] = []
    private let exited = Completion()
    /// The output reached its end: every byte the host wrote was appended.
    private let outputEnded = Completion()

    /// - Parameters:
    ///   - shellSetup: shell commands run before the host replaces the shell
    ///     (e.g. `ulimit -Sn 64`); the pid stays the same.
    ///   - currentDirectory: where the host starts (relative paths resolve from it).
    ///   - executable: the `servicehost` binary to run (by default the built one).
    /// - Parameter environment: variables set on top of this process's environment.
    init(_ arguments: [String], shellSetup: String? = nil, currentDirectory: URL? = nil, executable: URL? = nil,
         environment: [String: String] = [:]) throws {
        let binary = try executable ?? Self.binary
        // Each host its own control socket: the default path is one per user,
        // and tests run many hosts at once.
        let controlDirectory = try TemporaryDirectory("servicehost-control")
        self.controlDirectory = controlDirectory
        controlSocket = controlDirectory.file("control.sock").path
        var arguments = arguments
        if arguments.first == "run", !arguments.contains("--control-socket") {
            arguments += ["--control-socket", controlSocket]
        }
        if let shellSetup {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\(shellSetup); exec \"$0\" \"$@\"", binary.path] + arguments
        } else {
            process.executableURL = binary
            process.arguments = arguments
        }
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let pipe = try OutputPipe()
        output = pipe.reading
        pipe.attach(to: process)
        process.terminationHandler = { [exited] _ in exited.complete() }
        defer { pipe.closeWriting() }
        try process.run()
        // A blocking read on a thread of its own, to the pipe's end: Foundation's
        // readabilityHandler sometimes never reported the end of a closed pipe.
        Thread.detachNewThread { [weak self, output, outputEnded] in
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(output.fileDescriptor, &buffer, buffer.count)
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { break }
                self?.append(String(decoding: buffer[..<count], as: UTF8.self))
            }
            outputEnded.complete()
        }
    }

    /// A test that failed before its host exited leaves no host running
    /// (it would load the machine for every test after it).
    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    var pid: Int32 { process.processIdentifier }
    var outputText: String { lock.withLock { text } }

    private func append(_ chunk: String) {
        var ready: [CheckedContinuation<Void, Never>] = []
        lock.withLock {
            text += chunk
            waiters.removeAll { needle, count, continuation in
                guard Self.occurrences(of: needle, in: text) >= count else { return false }
                ready.append(continuation)
                return true
            }
        }
        for continuation in ready { continuation.resume() }
    }

    /// Waits until the output contains `needle`, `count` times.
    func waitForOutput(_ needle: String, count: Int = 1, timeout: Duration = .seconds(30)) async throws {
        try await withDeadline(timeout, waiting: "'\(needle)' ×\(count) in the host's output:\n\(outputText)",
                               onTimeout: { self.release(needle) }) {
            await withCheckedContinuation { continuation in
                self.lock.lock()
                if Self.occurrences(of: needle, in: self.text) >= count {
                    self.lock.unlock()
                    continuation.resume()
                } else {
                    self.waiters.append((needle, count, continuation))
                    self.lock.unlock()
                }
            }
        }
    }

    private static func occurrences(of needle: String, in text: String) -> Int {
        text.components(separatedBy: needle).count - 1
    }

    private func release(_ needle: String) {
        let released: [CheckedContinuation<Void, Never>] = lock.withLock {
            let matching = waiters.filter { $0.0 == needle }.map(\.2)
            waiters.removeAll { $0.0 == needle }
            return matching
        }
        for continuation in released { continuation.resume() }
    }

    func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit and returns its status; kills it on timeout.
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        do {
            try await withDeadline(timeout, waiting: "servicehost to exit",
                                   onTimeout: { self.send(SIGKILL) }) { await self.exited.wait() }
        } catch {
            process.terminate()
            throw error
        }
        process.waitUntilExit()
        // The last output arrives through the handler, up to the pipe's end
        // (reading the rest here raced a handler call already under way).
        _ = await outputEnded.wait(timeout: timeout)
        return process.terminationStatus
    }

    /// Runs the binary to completion and returns its exit status and output.
    static func run(_ arguments: [String], executable: URL? = nil) async throws -> (status: Int32, output: String) {
        let host = try HostProcess(arguments, executable: executable)
        let status = try await host.waitForExit()
        return (status, host.outputText)
    }
}
