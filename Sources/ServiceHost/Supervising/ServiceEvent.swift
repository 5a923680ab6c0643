/// Something that happened to a service, as the scheduler reports it.
///
/// Tests and embedding programs await these instead of polling or sleeping.
public struct ServiceEvent: Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A start succeeded; `starts` counts successful starts so far.
        case started(starts: Int)
        /// A run ended (or a start failed) for this reason.
        case stopped(StopReason)
        /// The host will start the service again after `delay`; `restart` counts restarts since the last order.
        case restarting(restart: Int, delay: Duration)
        /// A changed plugin file was loaded and created successfully.
        case reloaded(from: String, to: String)
        /// A changed plugin file was refused; the service keeps the image it had.
        case reloadRejected(reason: String)
        /// The service gave up and stays stopped until ordered to start.
        case failed(reason: String)
        /// A call into the service ran past its limit (watchdog, start or stop timeout).
        case hung(reason: String)
    }

    public let service: String
    public let kind: Kind
    /// When it happened, taken as it happened (not when a subscriber read it).
    public let time: ContinuousClock.Instant

    public init(service: String, kind: Kind, time: ContinuousClock.Instant = .now) {
        self.service = service
        self.kind = kind
        self.time = time
    }

    public var description: String { "\(service): \(kind)" }
}
