import Foundation

/// What a metrics scrape or a readiness check reads of one service: its
/// state and counters, without the rest of a ``ServiceStatus`` (no image
/// digest, no dates to format), so that reading a thousand stays cheap.
public struct ServiceSample: Sendable, Equatable {
    public var name: String
    public var state: ServiceStatus.State
    /// Why it failed, while ``ServiceStatus/State/failed``.
    public var failure: String?
    /// The requirements it waits for, while ``ServiceStatus/State/starting`` for that reason.
    public var waitingFor: [String]
    /// Successful starts in its life.
    public var starts: Int
    /// Restarts by the host in its life, by cause.
    public var restarts: [RestartCause: Int]
    /// Hot reloads of its plugin file in its life, by result.
    public var reloads: [ReloadResult: Int]
    /// Loop turns in its life.
    public var loops: UInt64
    /// When its current (or last) run started.
    public var lastStarted: Date?

    public init(name: String, state: ServiceStatus.State, failure: String? = nil, waitingFor: [String] = [],
                starts: Int = 0, restarts: [RestartCause: Int] = [:], reloads: [ReloadResult: Int] = [:],
                loops: UInt64 = 0, lastStarted: Date? = nil) {
        self.name = name
        self.state = state
        self.failure = failure
        self.waitingFor = waitingFor
        self.starts = starts
        self.restarts = restarts
        self.reloads = reloads
        self.loops = loops
        self.lastStarted = lastStarted
    }
}
