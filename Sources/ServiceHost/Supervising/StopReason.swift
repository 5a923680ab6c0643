/// Why a service's run ended.
public enum StopReason: Sendable, Equatable, CustomStringConvertible {
    /// The scheduler ordered it to stop (stop, restart, remove, shutdown). Never restarted.
    case ordered
    /// The service asked to stop itself (`request_stop`, ``BaseService/requestStop()``).
    case requested
    /// Its loop reported it finished (`SVC_DONE`).
    case finished
    /// Its loop reported a failure.
    case failed(ServiceFailure)
    /// Its start failed: `svc_create` returned an error, or the plugin could not be loaded.
    case startFailed(ServiceFailure)

    /// Whether the run ended in a failure rather than by choice.
    public var isFailure: Bool {
        switch self {
        case .ordered, .requested, .finished: false
        case .failed, .startFailed: true
        }
    }

    public var description: String {
        switch self {
        case .ordered: "stopped by order"
        case .requested: "stopped itself"
        case .finished: "finished"
        case .failed(let failure): "failed: \(failure)"
        case .startFailed(let failure): "failed to start: \(failure)"
        }
    }
}
