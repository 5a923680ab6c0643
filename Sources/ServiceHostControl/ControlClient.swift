import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Sends one request to a host's control socket: what `servicehost ctl` uses.
public struct ControlClient: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        /// Nothing answered at the socket (no host there, or not allowed to connect).
        public let unreachable: Bool
    }

    public struct Answer: Sendable {
        public var status: Int
        public var body: Data
    }

    public let path: String
    /// How long a request may take in all; an order that waits adds its own wait. Default 10 s.
    public var timeout: Duration
    /// The largest answer read. Default 64 MiB (the status of 1,000 services is under 1 MiB).
    public var maxAnswerBytes = 64 << 20

    public init(path: String, timeout: Duration = .seconds(10)) {
        self.path = path
        self.timeout = timeout
    }

    private typealias Connection = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    public func send(_ method: HTTPMethod, _ target: String) async throws(Failure) -> Answer {
        let connection: Connection
        do {
            connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(2))
                .connect(unixDomainSocketPath: path) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw Failure(description: "cannot reach a servicehost at \(path): \(Self.reason(error)); is `servicehost run` running, "
                + "with this --control-socket, as a user allowed to use it?", unreachable: true)
        }
        let timeout = self.timeout
        let result: Result<Answer, Failure> = await withTaskGroup(of: Result<Answer, Failure>?.self) { group in
            group.addTask { [maxAnswerBytes] in await Self.exchange(method, target, on: connection, maxAnswerBytes: maxAnswerBytes) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            connection.channel.close(promise: nil)
            return first ?? .failure(Failure(description: "no answer from \(path) within \(timeout)", unreachable: false))
        }
        return try result.get()
    }

    private static func exchange(_ method: HTTPMethod, _ target: String, on connection: Connection,
                                 maxAnswerBytes: Int) async -> Result<Answer, Failure> {
        do {
            return .success(try await connection.executeThenClose { inbound, outbound in
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "localhost")
                headers.add(name: "Content-Length", value: "0")
                // One write for the whole request: a host that answers at once and
                // closes must not find half of it still to be sent.
                try await outbound.write(contentsOf: [.head(HTTPRequestHead(version: .http1_1, method: method, uri: target,
                                                                             headers: headers)), .end(nil)])
                var status = 0
                var body = Data()
                for try await part in inbound {
                    switch part {
                    case .head(let head): status = Int(head.status.code)
                    case .body(let buffer):
                        body.append(contentsOf: buffer.readableBytesView)
                        guard body.count <= maxAnswerBytes else {
                            throw Failure(description: "the answer is over \(maxAnswerBytes) bytes", unreachable: false)
                        }
                    case .end: return Answer(status: status, body: body)
                    }
                }
                throw Failure(description: "the host closed the connection before its answer was complete", unreachable: false)
            })
        } catch let failure as Failure {
            return .failure(failure)
        } catch {
            return .failure(Failure(description: "the request failed: \(reason(error))", unreachable: false))
        }
    }

    private static func reason(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        return "\(error)"
    }
}
