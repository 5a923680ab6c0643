import Foundation
import Logging
import ServiceHost
import ServiceHostMetrics
import Synchronization

/// What the control API answers, apart from how it is reached: a request in,
/// a status code and a JSON document out. ``ControlServer`` carries it over
/// HTTP on a Unix socket; tests call it directly.
///
/// Orders reach the services only through the ``Scheduler``: nothing here
/// touches a service's thread, its loop or its restart path.
public final class ControlAPI: Sendable {
    /// One request, as HTTP delivered it.
    public struct Request: Sendable {
        public var method: String
        /// The path without the query, e.g. `/v1/services/Counter`.
        public var path: String
        public var query: [String: String]

        public init(method: String, target: String) {
            self.method = method
            let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            path = parts.first.map { String($0).removingPercentEncoding ?? String($0) } ?? "/"
            var query: [String: String] = [:]
            if parts.count == 2 {
                for pair in parts[1].split(separator: "&") {
                    let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    guard let rawKey = keyValue.first, !rawKey.isEmpty else { continue }
                    let key = String(rawKey).removingPercentEncoding ?? String(rawKey)
                    let value = keyValue.count == 2 ? String(keyValue[1]) : ""
                    query[key] = value.removingPercentEncoding ?? value
                }
            }
            self.query = query
        }
    }

    /// A status code and a body: JSON, unless said otherwise.
    public struct Response: Sendable {
        public var status: Int
        public var body: Data
        public var contentType: String

        public init(status: Int, body: Data, contentType: String = "application/json") {
            self.status = status
            self.body = body
            self.contentType = contentType
        }
    }

    /// What a peer may do.
    public enum Access: Sendable {
        /// Read and order: the host's own user and root.
        case full
        /// Read only: members of the control group.
        case readOnly
    }

    /// What the host says about itself.
    public struct HostInfo: Sendable {
        public var version: String
        public var pluginsDirectory: String
        public var started: Date = Date()
        public var startedInstant: ContinuousClock.Instant = .now

        public init(version: String, pluginsDirectory: String) {
            self.version = version
            self.pluginsDirectory = pluginsDirectory
        }
    }

    /// The longest a request for log lines may wait for a new one (`wait_ms`).
    public static let maxLogWaitMilliseconds = 60_000
    /// The longest an order may wait for its state (`timeout_ms`): ten minutes.
    public static let maxWaitMilliseconds = 600_000

    /// How long an order waits, when asked to wait without a `timeout_ms`.
    public static let defaultWaitMilliseconds = 30_000

    /// Log polls that wait at most at once (a fourth of the server's connections).
    public static let maxLogPolls = 16

    private let scheduler: Scheduler
    private let logs: ServiceLogRing
    private let polls = Atomic<Int>(0)
    private let host: HostInfo
    private let metrics: HostMetrics
    private let logger: Logger

    /// - Parameter metrics: what `GET /v1/metrics` serves; by default the
    ///   scheduler's own (give the one `--http` serves, so both agree).
    public init(scheduler: Scheduler, logs: ServiceLogRing, host: HostInfo, metrics: HostMetrics? = nil, logger: Logger) {
        self.scheduler = scheduler
        self.logs = logs
        self.host = host
        self.metrics = metrics ?? HostMetrics(scheduler: scheduler, version: host.version, started: host.started)
        self.logger = logger
    }

    /// Answers one request.
    public func handle(_ request: Request, access: Access) async -> Response {
        do {
            return try await route(request, access: access)
        } catch let failure as ControlDocument.Failure {
            return Self.refusal(failure)
        } catch {
            return Self.refusal(ControlDocument.Failure(code: "internal", message: "\(error)"))
        }
    }

    /// What a path names.
    private enum Resource {
        case host
        case services
        case service(String)
        case logs(String)
        case order(String, verb: String)
        case reload
        case metrics

        init?(path: String) {
            let segments = path.split(separator: "/").map(String.init)
            guard segments.first == "v1" else { return nil }
            switch segments.count {
            case 2 where segments[1] == "host": self = .host
            case 2 where segments[1] == "services": self = .services
            case 2 where segments[1] == "reload": self = .reload
            case 2 where segments[1] == "metrics": self = .metrics
            case 3 where segments[1] == "services": self = .service(segments[2])
            case 4 where segments[1] == "services" && segments[3] == "logs": self = .logs(segments[2])
            case 4 where segments[1] == "services" && ["start", "stop", "restart"].contains(segments[3]):
                self = .order(segments[2], verb: segments[3])
            default: return nil
            }
        }

        /// The one method each resource takes.
        var method: String {
            switch self {
            case .host, .services, .service, .logs, .metrics: "GET"
            case .order, .reload: "POST"
            }
        }
    }

    private func route(_ request: Request, access: Access) async throws -> Response {
        guard let resource = Resource(path: request.path) else {
            throw Refusal.notFound("no such resource: \(request.path) (see README, \"Operating\", for the API)")
        }
        guard request.method == resource.method else {
            throw Refusal.methodNotAllowed("\(request.method) is not allowed on \(request.path); use \(resource.method)")
        }
        switch resource {
        case .host:
            return try Self.ok(hostDocument())
        case .metrics:
            return Response(status: 200, body: Data(metrics.exposition()), contentType: HostMetrics.contentType)
        case .services:
            return try Self.ok(ControlDocument.Services(services: await scheduler.statusOffThePool()))
        case .service(let name):
            return try Self.ok(try await status(of: name))
        case .logs(let name):
            try requireService(name)
            let count = try Self.integer(request.query["lines"], named: "lines", default: 100, range: 1...100_000)
            let after = try Self.integer(request.query["after"], named: "after", default: 0, range: 0...Int.max)
            let wait = try Self.integer(request.query["wait_ms"], named: "wait_ms", default: 0, range: 0...Self.maxLogWaitMilliseconds)
            let lines: [ServiceLogRing.Line]
            if wait > 0 {
                // Long polls hold a connection each: a bounded number of them, so
                // that readers can never take every connection from an operator.
                guard polls.add(1, ordering: .relaxed).newValue <= Self.maxLogPolls else {
                    polls.subtract(1, ordering: .relaxed)
                    throw ControlDocument.Failure(code: "busy", message: "\(Self.maxLogPolls) log polls wait already; try again")
                }
                defer { polls.subtract(1, ordering: .relaxed) }
                lines = await logs.lines(of: name, last: count, after: UInt64(after), waitingUpTo: .milliseconds(wait))
            } else {
                lines = logs.lines(of: name, last: count, after: UInt64(after))
            }
            return try Self.ok(ControlDocument.Logs(service: name, lines: lines))
        case .order(let name, let verb):
            guard case .full = access else {
                throw Refusal.forbidden("members of the control group may only read; \(verb) needs the host's user or root")
            }
            return try Self.ok(try await order(verb, name, query: request.query))
        case .reload:
            guard case .full = access else {
                throw Refusal.forbidden("members of the control group may only read; reload needs the host's user or root")
            }
            let dryRun = try Self.flag(request.query["dry_run"], named: "dry_run")
            let report: ReloadReport
            do {
                report = try await scheduler.reload(directory: host.pluginsDirectory, dryRun: dryRun)
            } catch {
                throw ControlDocument.Failure(code: "reload_failed", message: error.description)
            }
            return try Self.ok(report)
        }
    }

    // MARK: Reading

    /// Counts only: no service's status (nor any image's digest) is built for it.
    private func hostDocument() -> ControlDocument.Host {
        let counts = scheduler.stateCounts()
        let states = Dictionary(uniqueKeysWithValues: ServiceStatus.State.allCases.map { ($0.rawValue, counts[$0] ?? 0) })
        return ControlDocument.Host(
            version: host.version, pid: getpid(), started: host.started,
            uptime: (ContinuousClock.now - host.startedInstant).seconds,
            pluginsDirectory: host.pluginsDirectory, states: states, services: counts.values.reduce(0, +))
    }

    /// Built off the cooperative pool: a status may read the plugin image for its digest.
    private func status(of name: String) async throws -> ServiceStatus {
        guard let status = await scheduler.statusOffThePool(of: name) else { throw Self.unknownService(name) }
        return status
    }

    private func requireService(_ name: String) throws {
        guard scheduler.snapshot(of: name) != nil else { throw Self.unknownService(name) }
    }

    private static func unknownService(_ name: String) -> ControlDocument.Failure {
        ControlDocument.Failure(code: "unknown_service", message: "no service named '\(name)'")
    }

    // MARK: Orders

    /// Carries out an order and, when asked (`wait=true`, `timeout_ms=N`),
    /// waits until the service is running (start, restart) or not running
    /// (stop), as `s6-svc -wU -T` does.
    private func order(_ verb: String, _ name: String, query: [String: String]) async throws -> ControlDocument.Order {
        let wait = try Self.flag(query["wait"], named: "wait")
        let timeout = Duration.milliseconds(try Self.integer(query["timeout_ms"], named: "timeout_ms",
                                                             default: Self.defaultWaitMilliseconds,
                                                             range: 1...Self.maxWaitMilliseconds))
        try requireService(name)
        logger.notice("control: \(verb) ordered", metadata: ["service": "\(name)"])
        // Subscribed before the order, so that no event of it is missed;
        // events from before the order are skipped by their time.
        let ordered = ContinuousClock.now
        let events = scheduler.events()
        do {
            switch verb {
            case "start":
                try scheduler.start(name)
            case "stop":
                try await scheduler.stop(name)
            default:
                try await scheduler.restart(name)
            }
        } catch {
            throw Self.failure(error)
        }
        // A stop has already waited, up to the service's stop timeout.
        let reachedRunning = wait && verb != "stop"
            ? await Self.waitUntilRunning(name, events: events, after: ordered, timeout: timeout) : false
        let final = try await status(of: name)
        let reached: Bool? = switch (wait, verb) {
        case (false, _): nil
        case (true, "stop"): [.stopped, .failed, .idle].contains(final.state)
        case (true, _): reachedRunning
        }
        return ControlDocument.Order(service: final, reached: reached)
    }

    /// Whether `name` starts (a `started` event) before it fails or `timeout` passes.
    private static func waitUntilRunning(_ name: String, events: AsyncStream<ServiceEvent>, after ordered: ContinuousClock.Instant,
                                         timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await event in events where event.service == name && event.time >= ordered {
                    switch event.kind {
                    case .started: return true
                    case .failed: return false
                    case .stopped, .restarting, .reloaded, .reloadRejected, .hung: continue
                    }
                }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    // MARK: Answers

    private enum Refusal {
        static func notFound(_ message: String) -> ControlDocument.Failure {
            ControlDocument.Failure(code: "not_found", message: message)
        }

        static func methodNotAllowed(_ message: String) -> ControlDocument.Failure {
            ControlDocument.Failure(code: "method_not_allowed", message: message)
        }

        static func forbidden(_ message: String) -> ControlDocument.Failure {
            ControlDocument.Failure(code: "forbidden", message: message)
        }

        static func badRequest(_ message: String) -> ControlDocument.Failure {
            ControlDocument.Failure(code: "bad_request", message: message)
        }
    }

    private static func failure(_ error: ServiceError) -> ControlDocument.Failure {
        let code = switch error.code {
        case .unknownService: "unknown_service"
        case .illegalTransition: "illegal_transition"
        case .shutDown: "shutting_down"
        default: "invalid"
        }
        return ControlDocument.Failure(code: code, message: error.reason)
    }

    private static func failure(_ error: any Error) -> ControlDocument.Failure {
        if let error = error as? ServiceError { return failure(error) }
        return ControlDocument.Failure(code: "internal", message: "\(error)")
    }

    /// The HTTP status of each refusal code.
    static func httpStatus(of code: String) -> Int {
        switch code {
        case "bad_request": 400
        case "forbidden": 403
        case "unknown_service", "not_found": 404
        case "method_not_allowed": 405
        case "timeout": 408
        case "illegal_transition": 409
        case "too_large": 413
        case "shutting_down", "busy": 503
        default: 500
        }
    }

    static func refusal(_ failure: ControlDocument.Failure) -> Response {
        let body = (try? ControlDocument.encoder().encode(failure)) ?? Data("{}".utf8)
        return Response(status: httpStatus(of: failure.error.code), body: body)
    }

    private static func ok(_ document: some Encodable) throws -> Response {
        Response(status: 200, body: try ControlDocument.encoder().encode(document))
    }

    private static func integer(_ text: String?, named name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw Refusal.badRequest("'\(name)' must be a whole number from \(range.lowerBound) to \(range.upperBound), not '\(text)'")
        }
        return number
    }

    private static func flag(_ text: String?, named name: String) throws -> Bool {
        switch text {
        case nil, "false", "0": return false
        case "", "true", "1": return true
        case let other?: throw Refusal.badRequest("'\(name)' must be true or false, not '\(other)'")
        }
    }
}
