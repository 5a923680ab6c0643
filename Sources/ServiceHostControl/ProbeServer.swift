import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Serves the ``ProbeAPI`` (metrics and health, read only) as HTTP/1.1 on a
/// TCP address (`run --http 127.0.0.1:9464`), for Prometheus and
/// Kubernetes' probes. Bounded as the control socket is: a few connections
/// at once, a deadline for each request and each answer.
public final class ProbeServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Connections served at once; more are closed unserved. Default 16.
        public var maxConnections = 16
        /// How long a client has to send its whole request. Default 5 s.
        public var requestTimeout = Duration.seconds(5)
        /// The largest request, head and body. Default 8 KiB.
        public var maxRequestBytes = 8 * 1024
        /// How long a client has to take the answer once it is ready. Default 10 s.
        public var answerTimeout = Duration.seconds(10)

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `ADDRESS:PORT`, `[IPV6]:PORT` or `:PORT` (every IPv4 address; `[::]:PORT`
        /// for IPv6 too); the reason when it is none of these.
        public static func parse(_ text: String) -> Result<Configuration, AddressError> {
            guard let colon = text.lastIndex(of: ":") else {
                return .failure(AddressError(description: "'\(text)' is not ADDRESS:PORT (e.g. 127.0.0.1:9464)"))
            }
            var host = String(text[..<colon])
            let portText = text[text.index(after: colon)...]
            guard let port = Int(portText), (0...65535).contains(port) else {
                return .failure(AddressError(description: "'\(portText)' in '\(text)' is not a port from 0 to 65535"))
            }
            if host.hasPrefix("[") && host.hasSuffix("]") {
                host = String(host.dropFirst().dropLast())
            } else if host.contains(":") {
                return .failure(AddressError(description: "'\(text)': write an IPv6 address in brackets, as [::1]:\(port)"))
            }
            return .success(Configuration(host: host.isEmpty ? "0.0.0.0" : host, port: port))
        }
    }

    public struct AddressError: Error, CustomStringConvertible {
        public let description: String
    }

    public struct StartFailure: Error, CustomStringConvertible {
        public let description: String
    }

    private let configuration: Configuration
    private let api: ProbeAPI
    private let logger: Logger
    private let exchanges: HTTPExchanges
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let listener = Mutex<(channel: Channel, serving: Task<Void, Never>)?>(nil)

    public init(configuration: Configuration, api: ProbeAPI, logger: Logger) {
        self.configuration = configuration
        self.api = api
        self.logger = logger
        exchanges = HTTPExchanges(
            limits: .init(maxConnections: configuration.maxConnections, requestTimeout: configuration.requestTimeout,
                          maxRequestBytes: configuration.maxRequestBytes, answerTimeout: configuration.answerTimeout),
            name: "http", logger: logger)
    }

    /// Binds the address and starts serving; returns the port bound (the one asked for, or the kernel's choice for 0).
    @discardableResult
    public func start() async throws(StartFailure) -> Int {
        let server: NIOAsyncChannel<HTTPExchanges.Connection, Never>
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 64)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .bind(host: configuration.host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        return try HTTPExchanges.Connection(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            try? await group.shutdownGracefully()
            throw StartFailure(description: "--http \(configuration.host):\(configuration.port) cannot be listened on: \(error)")
        }
        let port = server.channel.localAddress?.port ?? configuration.port
        let serving = Task {
            await self.exchanges.serve(server, admit: { _ in () }) { head, _, tooLarge in
                if tooLarge {
                    return ControlAPI.Response(status: 413, body: Data("request too large\n".utf8), contentType: "text/plain; charset=utf-8")
                }
                return self.api.handle(method: head.method.rawValue, target: head.uri)
            }
        }
        listener.withLock { $0 = (server.channel, serving) }
        logger.notice("metrics and health on http://\(configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host):\(port) (/metrics, /livez, /readyz)")
        return port
    }

    /// Stops accepting and ends the requests under way.
    public func stop() async {
        guard let (channel, serving) = listener.withLock({ current in defer { current = nil }; return current }) else { return }
        try? await channel.close()
        serving.cancel()
        await serving.value
        try? await group.shutdownGracefully()
    }
}
