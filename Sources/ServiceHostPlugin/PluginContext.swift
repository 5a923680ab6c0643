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

    // MARK: Kept across runs and versions

    /// What this service kept when this run began (``saveState(_:)`` in an
    /// earlier run, of this version or another): your own format, so begin
    /// it with a format version and read every version you ever wrote.
    /// `nil` when nothing was kept, or on a host without kept state.
    public var keptState: [UInt8]? { host.loadState() }

    /// Keeps `bytes` (at most 16 MiB) for this service's next runs, in place
    /// of what was kept before: call it as a checkpoint in ``ServicePlugin/loop(context:)``
    /// and in ``ServicePlugin/stop(context:)``. In process isolation the
    /// bytes reach the host before it returns, so a crash right after loses nothing.
    public func saveState(_ bytes: some Collection<UInt8>) throws(PluginError) {
        let code = Array(bytes).withUnsafeBytes { host.saveState($0) }
        guard code == 0 else { throw PluginError(code: code, "state_save of \(bytes.count) bytes returned \(code)") }
    }

    /// Keeps a duplicate of `descriptor` under `name` (1 to 64 letters,
    /// digits, `.`, `_`, `-`) for this service's next runs, e.g. a listening
    /// socket; `descriptor` stays yours to close. At most 256 per service.
    public func keepDescriptor(_ descriptor: Int32, named name: String) throws(PluginError) {
        let code = host.keepDescriptor(descriptor, named: name)
        guard code == 0 else { throw PluginError(code: code, "fd_keep(\"\(name)\") returned \(code)") }
    }

    /// Forgets the descriptor kept under `name` (the host closes its copy).
    public func forgetDescriptor(named name: String) throws(PluginError) {
        let code = host.keepDescriptor(-1, named: name)
        guard code == 0 else { throw PluginError(code: code, "fd_keep(\"\(name)\", -1) returned \(code)") }
    }

    /// A new descriptor (yours to close) for what was kept under `name` when
    /// this run began; `nil` when nothing was.
    public func keptDescriptor(named name: String) -> Int32? {
        let descriptor = host.loadDescriptor(named: name)
        return descriptor >= 0 ? descriptor : nil
    }
}
