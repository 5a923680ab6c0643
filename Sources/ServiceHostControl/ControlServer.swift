import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Serves the ``ControlAPI`` as HTTP/1.1 + JSON on a Unix socket, so that
/// `curl --unix-socket PATH http://localhost/v1/services` works with no
/// client of ours. swift-nio parses HTTP; one request per connection.
///
/// Security: the socket is made `0600` (`0660` with a control group) by the
/// umask in force at `bind` (a socket's mode cannot be changed through its
/// descriptor), and every connection's peer is checked with `SO_PEERCRED`
/// (see ``PeerAccess``); refusals are logged with the peer's uid and pid.
/// Bounds: a request must arrive whole within ``Configuration/requestTimeout``
/// and be at most ``Configuration/maxRequestBytes``; at most
/// ``Configuration/maxConnections`` are served at once, so a slow or hostile
/// client holds one slot for a few seconds and never the host.
public final class ControlServer: Sendable {
    public struct Configuration: Sendable {
        /// Where the socket is made.
        public var path: String
        /// A group whose members may read (mode `0660`); `nil` (the default): only the host's user and root (`0600`).
        public var controlGroup: gid_t?
        /// Connections served at once; more are answered 503 and closed. Default 64.
        public var maxConnections = 64
        /// How long a client has to send its whole request. Default 5 s.
        public var requestTimeout = Duration.seconds(5)
        /// The largest request, head and body. Default 64 KiB.
        public var maxRequestBytes = 64 * 1024
        /// How long a client has to take the answer once it is ready. Default 10 s.
        public var answerTimeout = Duration.seconds(10)

        public init(path: String, controlGroup: gid_t? = nil) {
            self.path = path
            self.controlGroup = controlGroup
        }
    }

    public struct StartFailure: Error, CustomStringConvertible {
        public let description: String
    }

    private typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    private let configuration: Configuration
    private let api: ControlAPI
    private let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let listener = Mutex<(channel: Channel, serving: Task<Void, Never>)?>(nil)
    private let active = Atomic<Int>(0)
    /// Refusals are logged at most once a second, so a client that connects in a loop cannot flood the log.
    private let refusals = RateLimitedNote(every: .seconds(1))

    public init(configuration: Configuration, api: ControlAPI, logger: Logger) {
        self.configuration = configuration
        self.api = api
        self.logger = logger
    }

    /// Makes the socket and starts serving.
    public func start() async throws(StartFailure) {
        let path = configuration.path
        do {
            try ControlSocketPath.prepare(path)
        } catch {
            throw StartFailure(description: error.description)
        }
        let server: NIOAsyncChannel<Connection, Never>
        // Process-wide, so set only around the bind, before any plugin runs.
        let previous = umask(configuration.controlGroup == nil ? 0o177 : 0o117)
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 128)
                .bind(unixDomainSocketPath: path) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
            umask(previous)
        } catch {
            umask(previous)
            throw StartFailure(description: "control socket \(path) cannot be made: \(error)")
        }
        if let controlGroup = configuration.controlGroup, lchown(path, uid_t.max, controlGroup) != 0 {
            let reason = String(cString: strerror(errno))
            server.channel.close(promise: nil)
            unlink(path)
            throw StartFailure(description: "control socket \(path) cannot be given to group \(controlGroup): \(reason)")
        }
        let serving = Task { await self.serve(server) }
        listener.withLock { $0 = (server.channel, serving) }
        logger.notice("control API on \(path) (mode \(configuration.controlGroup == nil ? "0600" : "0660"))")
    }

    /// Stops accepting, ends the requests under way (a waiting order or log
    /// poll is cancelled, not waited out), and removes the socket.
    public func stop() async {
        guard let (channel, serving) = listener.withLock({ current in defer { current = nil }; return current }) else { return }
        try? await channel.close()
        serving.cancel()
        await serving.value
        unlink(configuration.path)
        try? await group.shutdownGracefully()
    }

    private func serve(_ server: NIOAsyncChannel<Connection, Never>) async {
        do {
            try await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask { await self.handle(connection) }
                    }
                }
            }
        } catch {
            logger.debug("control API stopped: \(error)")
        }
    }

    private func handle(_ connection: Connection) async {
        let channel = connection.channel
        guard active.add(1, ordering: .relaxed).newValue <= configuration.maxConnections else {
            // Closed unread: an answer before the request confuses clients, and reading it would hold a slot.
            active.subtract(1, ordering: .relaxed)
            try? await channel.close()
            refusals.note { suppressed in
                logger.warning("control: a connection was closed unserved: \(configuration.maxConnections) are served already\(suppressed)")
            }
            return
        }
        defer { active.subtract(1, ordering: .relaxed) }
        let access = await peerAccess(of: channel)
        // One deadline for the whole request, so a client that trickles bytes cannot hold its slot.
        let deadline = channel.eventLoop.scheduleTask(in: Self.timeAmount(configuration.requestTimeout)) {
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
                    if size > configuration.maxRequestBytes { break reading }
                }
                deadline.cancel()
                guard let head else { return }
                logger.debug("control: \(head.method.rawValue) \(head.uri)")
                let response: ControlAPI.Response = if let access {
                    if size > configuration.maxRequestBytes {
                        ControlAPI.refusal(ControlDocument.Failure(
                            code: "too_large", message: "a request may be at most \(configuration.maxRequestBytes) bytes"))
                    } else {
                        await api.handle(ControlAPI.Request(method: head.method.rawValue, target: head.uri), access: access)
                    }
                } else {
                    ControlAPI.refusal(ControlDocument.Failure(
                        code: "forbidden", message: "only the host's user, root and members of the control group may use this socket"))
                }
                // And one for taking the answer: a client that never reads cannot hold its slot either.
                let answering = channel.eventLoop.scheduleTask(in: Self.timeAmount(configuration.answerTimeout)) {
                    channel.close(promise: nil)
                }
                defer { answering.cancel() }
                try await Self.write(response, on: channel)
            }
        } catch {
            deadline.cancel()
            logger.debug("control connection ended: \(error)")
        }
    }

    /// Who the peer is, and what it may do; `nil` (logged) when it may do nothing.
    private func peerAccess(of channel: Channel) async -> ControlAPI.Access? {
        guard let provider = channel as? SocketOptionProvider,
              let credentials: PeerAccess.Credentials = try? await provider.unsafeGetSocketOption(
                level: NIOBSDSocket.OptionLevel(rawValue: SOL_SOCKET), name: NIOBSDSocket.Option(rawValue: SO_PEERCRED)).get() else {
            logger.warning("control: refused a connection whose peer credentials cannot be read")
            return nil
        }
        let access = PeerAccess.access(uid: credentials.uid, gid: credentials.gid,
                                       groups: PeerAccess.supplementaryGroups(of: credentials.pid),
                                       hostUser: getuid(), controlGroup: configuration.controlGroup)
        if access == nil {
            refusals.note { suppressed in
                logger.warning("control: refused a connection from uid \(credentials.uid), pid \(credentials.pid): not the host's user, root or a member of the control group\(suppressed)")
            }
        }
        return access
    }

    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds.multipliedReportingOverflow(by: 1_000_000_000).overflow
            ? .max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Writes the answer through the channel and returns once all of it is
    /// in the socket: the async writer's own writes are not waited for, and
    /// closing right after them cut answers larger than the socket's buffer.
    private static func write(_ response: ControlAPI.Response, on channel: Channel) async throws {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(response.body.count)")
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        channel.write(HTTPServerResponsePart.head(head), promise: nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: response.body))), promise: nil)
        try await channel.writeAndFlush(HTTPServerResponsePart.end(nil)).get()
    }
}
