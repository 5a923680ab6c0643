import Logging
import ServiceHost
import NIOCore
import NIOHTTP1
import Synchronization

/// Serves one request per connection for a listener (the control socket, the
/// TCP probe listener): bounded connections at once, one deadline for the
/// whole request and one for taking the answer, a largest request. What the
/// answer is, and who may ask, is the listener's business (`answer`).
final class HTTPExchanges: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    struct Limits: Sendable {
        var maxConnections: Int
        var requestTimeout: Duration
        var maxRequestBytes: Int
        var answerTimeout: Duration
    }


    private let limits: Limits
    private let name: String
    private let logger: Logger
    private let active = Atomic<Int>(0)
    /// Refusals are logged at most once a second, so a client that connects in a loop cannot flood the log.
    let refusals = RateLimitedNote(every: .seconds(1))

    /// - Parameter name: the listener, for log lines ("control", "http").
    init(limits: Limits, name: String, logger: Logger) {
        self.limits = limits
        self.name = name
        self.logger = logger
    }

    /// Serves every connection until the listener closes or the task is cancelled.
    /// - Parameters:
    ///   - admit: who the peer is, asked as soon as it connects (before its
    ///     request is read, while it is surely the one that connected).
    ///   - answer: the answer to a whole request, given the admission;
    ///     `tooLarge` when the request exceeded the limit (its head is then all there is).
    func serve<Admission: Sendable>(_ server: NIOAsyncChannel<Connection, Never>,
                                    admit: @escaping @Sendable (Channel) async -> Admission,
                                    answer: @escaping @Sendable (_ head: HTTPRequestHead, _ admission: Admission, _ tooLarge: Bool) async -> ControlAPI.Response) async {
        do {
            try await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask { await self.handle(connection, admit: admit, answer: answer) }
                    }
                }
            }
        } catch {
            logger.debug("\(name) listener stopped: \(error)")
        }
    }

    private func handle<Admission: Sendable>(_ connection: Connection, admit: @Sendable (Channel) async -> Admission,
                                             answer: @Sendable (HTTPRequestHead, Admission, Bool) async -> ControlAPI.Response) async {
        let channel = connection.channel
        guard active.add(1, ordering: .relaxed).newValue <= limits.maxConnections else {
            // Closed unread: an answer before the request confuses clients, and reading it would hold a slot.
            active.subtract(1, ordering: .relaxed)
            try? await channel.close()
            refusals.note { suppressed in
                logger.warning("\(name): a connection was closed unserved: \(limits.maxConnections) are served already\(suppressed)")
            }
            return
        }
        defer { active.subtract(1, ordering: .relaxed) }
        let admission = await admit(channel)
        // One deadline for the whole request, so a client that trickles bytes cannot hold its slot.
        let deadline = channel.eventLoop.scheduleTask(in: Self.timeAmount(limits.requestTimeout)) {
            channel.close(promise: nil)
        }
        do {
            try await connection.executeThenClose { inbound, _ in
                var head: HTTPRequestHead?
                var size = 0
                reading: for try await part in inbound {
                    switch part {
                    case .head(let received):
                        head = received
                        size += received.uri.utf8.count + received.headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count }
                    case .body(let buffer):
                        size += buffer.readableBytes
                    case .end:
                        break reading
                    }
                    if size > limits.maxRequestBytes { break reading }
                }
                deadline.cancel()
                guard let head else { return }
                logger.debug("\(name): \(head.method.rawValue) \(head.uri)")
                let response = await answer(head, admission, size > limits.maxRequestBytes)
                // And one for taking the answer: a client that never reads cannot hold its slot either.
                let answering = channel.eventLoop.scheduleTask(in: Self.timeAmount(limits.answerTimeout)) {
                    channel.close(promise: nil)
                }
                defer { answering.cancel() }
                try await Self.write(response, on: channel)
            }
        } catch {
            deadline.cancel()
            logger.debug("\(name) connection ended: \(error)")
        }
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        .nanoseconds(duration.nanoseconds)
    }

    /// Writes the answer through the channel and returns once all of it is
    /// in the socket: the async writer's own writes are not waited for, and
    /// closing right after them cut answers larger than the socket's buffer.
    private static func write(_ response: ControlAPI.Response, on channel: Channel) async throws {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: "\(response.body.count)")
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: response.body))), promise: nil)
        try await channel.writeAndFlush(HTTPServerResponsePart.end(nil)).get()
    }
}
