import Foundation
import Synchronization

@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

/// A client that sends requests to a TCP echo server on 127.0.0.1 without
/// pause, one connection each, on a thread of its own, and counts what
/// happened: answered, refused (`ECONNREFUSED`), or lost (connected, but no
/// whole, equal answer).
final class EchoClient: Sendable {
    struct Tally: Sendable {
        var answered = 0
        var refused = 0
        var lost = 0
        var lastLoss = ""
    }

    let port: UInt16
    private let tally = Mutex(Tally())
    private let running = Atomic<Bool>(true)
    private let finished = Completion()

    init(port: UInt16) {
        self.port = port
        Thread.detachNewThread { [self] in
            var sequence = 0
            while running.load(ordering: .relaxed) {
                sequence += 1
                let outcome = request("request \(sequence)\n")
                tally.withLock { tally in
                    switch outcome {
                    case .answered: tally.answered += 1
                    case .refused: tally.refused += 1
                    case .lost(let why):
                        tally.lost += 1
                        tally.lastLoss = why
                    }
                }
            }
            finished.complete()
        }
    }

    var current: Tally { tally.withLock { $0 } }

    /// Stops sending and returns the tally once the request under way ended.
    func stop() async -> Tally {
        running.store(false, ordering: .relaxed)
        await finished.wait()
        return current
    }

    /// Waits until `count` more requests were answered than now.
    func waitForAnswers(_ count: Int, timeout: Duration = .seconds(30)) async throws {
        let target = current.answered + count
        let deadline = ContinuousClock.now + timeout
        // The client has no event to await per answer; it is polled, with a deadline.
        while current.answered < target {
            guard ContinuousClock.now < deadline else {
                throw TestFailure(description: "only \(current.answered) of \(target) answers within \(timeout): \(current)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    private enum Outcome { case answered, refused, lost(String) }

    private func request(_ line: String) -> Outcome {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { return .lost("socket: \(errno)") }
        defer { close(socket) }
        var limit = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if connected != 0 {
            return errno == ECONNREFUSED ? .refused : .lost("connect: errno \(errno)")
        }
        let bytes = Array(line.utf8)
        guard write(socket, bytes, bytes.count) == bytes.count else { return .lost("write: errno \(errno)") }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while answer.count < bytes.count {
            let got = read(socket, &buffer, buffer.count)
            guard got > 0 else { return .lost("read returned \(got) after \(answer.count) bytes (errno \(errno))") }
            answer += buffer[0..<got]
        }
        return answer == bytes ? .answered : .lost("answer \(String(decoding: answer, as: UTF8.self)) to \(line)")
    }

    /// A loopback port that was free a moment ago.
    static func freePort() throws -> UInt16 {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(socket, address, length) == 0 && getsockname(socket, address, &length) == 0
            }
        }
        guard bound else { throw TestFailure(description: "no free port: errno \(errno)") }
        return UInt16(bigEndian: address.sin_port)
    }
}

/// A test helper's failure, with what it saw.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
}
