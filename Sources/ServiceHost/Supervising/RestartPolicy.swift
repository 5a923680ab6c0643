/// When a service that stopped without being ordered to is started again.
///
/// An order from the scheduler (stop, remove, shutdown) never leads to a
/// restart; the policy applies to everything else: `SVC_DONE`, an error code,
/// `request_stop`, or a failed `svc_create`.
public struct RestartPolicy: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
        case always
        case onFailure = "on-failure"
        case never
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// Restart whatever the reason the service stopped.
    public static let always = RestartPolicy(.always)
    /// Restart only after a failure: an error code or a failed create.
    /// A service that finished (`SVC_DONE`) or asked to stop stays stopped.
    public static let onFailure = RestartPolicy(.onFailure)
    /// Never restart.
    public static let never = RestartPolicy(.never)

    /// The policy spelled as in a sidecar file: `always`, `on-failure` or `never`.
    public init?(sidecarValue: String) {
        guard let base = Base(rawValue: sidecarValue) else { return nil }
        self.init(base)
    }

    /// Whether a service that stopped on its own should be started again.
    /// - Parameter failed: the service stopped on an error rather than finishing.
    public func restarts(afterFailure failed: Bool) -> Bool {
        switch base {
        case .always: true
        case .onFailure: failed
        case .never: false
        }
    }

    public var description: String { base.rawValue }
}
