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

    private typealias Connection = HTTPExchanges.Connection

    private let configuration: Configuration
    private let api: ControlAPI
    private let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let listener = Mutex<(channel: Channel, serving: Task<Void, Never>)?>(nil)
    private let exchanges: HTTPExchanges

    public init(configuration: Configuration, api: ControlAPI, logger: Logger) {
        self.configuration = configuration
        self.api = api
        self.logger = logger
        exchanges = HTTPExchanges(
            limits: .init(maxConnections: configuration.maxConnections, requestTimeout: configuration.requestTimeout,
                          maxRequestBytes: configuration.maxRequestBytes, answerTimeout: configuration.answerTimeout),
            name: "control", logger: logger)
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
        let serving = Task {
            await self.exchanges.serve(server, admit: { channel in await self.peerAccess(of: channel) }) { head, access, tooLarge in
                await self.answer(head, access: access, tooLarge: tooLarge)
            }
        }
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

    /// The answer to one whole request: refused unless the peer may use the socket.
    private func answer(_ head: HTTPRequestHead, access: ControlAPI.Access?, tooLarge: Bool) async -> ControlAPI.Response {
        guard let access else {
            return ControlAPI.refusal(ControlDocument.Failure(
                code: "forbidden", message: "only the host's user, root and members of the control group may use this socket"))
        }
        if tooLarge {
            return ControlAPI.refusal(ControlDocument.Failure(
                code: "too_large", message: "a request may be at most \(configuration.maxRequestBytes) bytes"))
        }
        return await api.handle(ControlAPI.Request(method: head.method.rawValue, target: head.uri), access: access)
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
            exchanges.refusals.note { suppressed in
                logger.warning("control: refused a connection from uid \(credentials.uid), pid \(credentials.pid): not the host's user, root or a member of the control group\(suppressed)")
            }
        }
        return access
    }
}
