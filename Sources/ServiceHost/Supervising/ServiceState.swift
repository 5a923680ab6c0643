/// The three states of a service, as seen from outside.
///
/// `idle` only before the first start: once started, a service is only ever
/// `started` or `stopped`.
public enum ServiceState: String, Sendable, CustomStringConvertible {
    /// Just created, never started.
    case idle
    /// Created and running its event loop.
    case started
    /// Stopped: by an order, on its own, or because its start failed.
    case stopped

    public var description: String { rawValue }
}
