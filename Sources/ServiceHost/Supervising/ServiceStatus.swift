import Foundation

/// How one service stands, as an operator sees it: what `servicehost ctl
/// status` shows and the control API serves (its JSON keys are the
/// snake_case of these names). The set of states and the meaning of every
/// field are part of the stable interface (README, "Operating").
public struct ServiceStatus: Sendable, Equatable, Codable {
    /// The states, a documented and stable set.
    public enum State: String, Sendable, Codable, CaseIterable {
        /// Added, never ordered to start.
        case idle
        /// Ordered to start: waiting for its requirements, its start delay, or in `svc_create`.
        case starting
        /// Started: its loop runs.
        case running
        /// Ordered to stop (or its run ended and the host decides what follows); still inside the plugin.
        case stopping
        /// Not running, and not failed: stopped by an order, or by its restart policy.
        case stopped
        /// Waiting to be restarted; ``ServiceStatus/backoffRemaining`` says for how long.
        case backoff
        /// Gave up (restarts used up, restart intensity reached, unloadable, hung, its thread gone);
        /// ``ServiceStatus/failure`` says why. Stays so until started or retried.
        case failed
    }

    public var name: String
    public var state: State
    /// When it entered ``state``.
    public var since: Date
    /// Seconds since it started, while ``State/running``.
    public var uptime: Double?
    /// Seconds until the restart, while in ``State/backoff``.
    public var backoffRemaining: Double?
    /// `thread` or `process`.
    public var isolation: String
    /// The worker process's pid, while one runs (process isolation).
    public var pid: Int32?
    /// Successful starts in the service's life.
    public var starts: Int
    /// Restarts by the host since the last start order.
    public var restarts: Int
    /// How the last run ended ("finished (SVC_DONE)", "failed: … (code 3)", "worker killed by signal 9", …).
    public var lastExit: String?
    /// The most recent error the service had.
    public var lastError: String?
    /// Why it failed, while ``State/failed``.
    public var failure: String?
    /// The requirements it waits for, while ``State/starting`` for that reason.
    public var waitingFor: [String]
    /// The plugin file behind the service, if it is a plugin.
    public var path: String?
    /// The plugin's `svc_plugin_version`, if it has one.
    public var version: String?
    /// The SHA-256 of the plugin image in use, in hex.
    public var sha256: String?
    /// The services it requires.
    public var requires: [String]
    /// The names of the descriptors the host keeps for it (`fd_keep`).
    public var keptDescriptors: [String] = []
    /// How many bytes of state the host keeps for it (`state_save`).
    public var keptStateBytes: Int = 0
}

extension ServiceStatus {
    /// A service's status from its supervision and its own metadata, with
    /// monotonic instants turned into wall-clock dates as of `now`/`wallNow`.
    init<Run>(service: BaseService, supervision: SupervisorStateMachine<Run>.Status,
              now: ContinuousClock.Instant, wallNow: Date) {
        let metadata = service.metadata
        let plugin = service as? any ReloadableService
        let sinceAgo = max(now - supervision.since, .zero)
        self.init(
            name: service.name,
            state: supervision.state,
            since: wallNow.addingTimeInterval(-sinceAgo.seconds),
            uptime: supervision.state == .running ? sinceAgo.seconds : nil,
            backoffRemaining: supervision.backoffUntil.map { max($0 - now, .zero).seconds },
            isolation: service.isolation.description,
            pid: service.processID,
            starts: metadata.starts,
            restarts: metadata.restarts,
            lastExit: supervision.lastExit.map(\.description),
            lastError: metadata.errors.last?.message,
            failure: supervision.failure,
            waitingFor: supervision.waitingFor,
            path: plugin?.file ?? metadata.pluginFile,
            version: metadata.pluginVersion,
            sha256: plugin?.sha256,
            requires: service.configuration.requires,
            keptDescriptors: plugin?.keptState.descriptorNames ?? [],
            keptStateBytes: plugin?.keptState.keptCount ?? 0)
    }
}
