import Foundation

/// What the host knows about one service, for operators and tests.
public struct ServiceMetadata: Sendable {
    /// One error a service had.
    public struct ErrorRecord: Sendable, Equatable {
        public var code: Int32
        public var message: String
        public var time: Date
    }

    /// How many errors are kept; older ones are dropped (``errorCount`` keeps counting),
    /// so a service that fails forever cannot grow the host's memory.
    public static let errorHistoryLimit = 64

    public var name: String
    /// The wait before the first start.
    public var delay: Duration
    /// The restarts allowed; `nil` is unlimited.
    public var retries: Int?
    /// The restart policy in force (the sidecar's, or the host's default).
    public var restartPolicy: RestartPolicy
    /// Whether the service may be recovered: its policy restarts it after some stop.
    public var recovers: Bool { restartPolicy != .never }
    /// How many times the service started (successful creates).
    public var starts: Int = 0
    /// How many restarts the host made since the last start order.
    public var restarts: Int = 0
    /// The most recent errors, oldest first, at most ``errorHistoryLimit``.
    public var errors: [ErrorRecord] = []
    /// How many errors the service had in all.
    public var errorCount: Int = 0
    /// The service gave up: its restarts are used up. Cleared by the next start order.
    public var failed: Bool = false
    /// Why it failed, when ``failed`` is set.
    public var failureReason: String?
    /// The plugin file behind the service, if it is a plugin.
    public var pluginFile: String?
    /// The version of the plugin image in use.
    public var pluginVersion: String?
    /// Restarts by the host in the service's life, by cause (never reset, unlike ``restarts``).
    public var restartsByCause: [RestartCause: Int] = [:]
    /// Hot reloads of its plugin file in the service's life, by result.
    public var reloadsByResult: [ReloadResult: Int] = [:]
    /// When its current (or last) run started; `nil` before the first start.
    public var lastStarted: Date?

    mutating func record(_ failure: ServiceFailure, at time: Date = Date()) {
        errorCount += 1
        errors.append(ErrorRecord(code: failure.code, message: failure.message, time: time))
        if errors.count > Self.errorHistoryLimit {
            errors.removeFirst(errors.count - Self.errorHistoryLimit)
        }
    }
}

/// A service's state and metadata at one moment.
public struct ServiceSnapshot: Sendable {
    public var name: String
    public var state: ServiceState
    public var metadata: ServiceMetadata
}
