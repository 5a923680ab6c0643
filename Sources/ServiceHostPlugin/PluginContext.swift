import Logging

/// What a plugin gets from the host: its name, a logger whose lines reach
/// the host's log under the service's name, its sidecar's `[config]`, and
/// the stop signal. Valid from ``ServicePlugin/init(context:)`` until
/// ``ServicePlugin/stop(context:)`` returns; do not keep it longer.
public final class PluginContext: @unchecked Sendable {
    /// The service's name: the plugin file's name without `lib` and `.so`.
    public let serviceName: String
    /// A swift-log logger writing to the host's log (levels: trace and debug
    /// as debug, info and notice as info, warning, error and critical as error).
    public let logger: Logger
    /// The sidecar's `[config]` table, read through the host.
    public let config: PluginConfig
    private let host: HostCallbacks

    init(host: HostCallbacks) {
        self.host = host
        serviceName = host.serviceName
        logger = Logger(label: host.serviceName) { _ in PluginLogHandler(host: host) }
        config = PluginConfig(host: host)
    }

    /// Whether this run should end: the host ordered a stop, or
    /// ``requestStop()`` was called. Cheap (one atomic load in the host);
    /// `false` on a host too old to say.
    public var stopRequested: Bool { host.stopRequested() }

    /// A descriptor that becomes readable when this run should end, for a
    /// loop blocked in `poll`/`epoll`/`select`; the host owns it (never read,
    /// write or close it). `nil` on a host too old to have one, or when it
    /// could not make one.
    public var stopDescriptor: Int32? { host.stopDescriptor() }

    /// Asks the host to stop this service once the current loop turn
    /// returns: the service stopping itself, which recovery restarts.
    public func requestStop() { host.requestStop() }
}
