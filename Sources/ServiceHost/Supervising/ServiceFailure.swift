/// A failure reported by a service: an error code and what it means.
///
/// Plugins report failures as negative codes; native services throw this
/// from ``BaseService/onCreate()`` or return it from ``BaseService/onLoop()``.
public struct ServiceFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int32
    public var message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(message) (code \(code))" }
}

/// What one turn of a service's loop asks for next.
public enum LoopOutcome: Sendable, Equatable {
    /// Run the loop again after the service's interval.
    case `continue`
    /// The service finished its work and stops cleanly.
    case done
    /// The service failed and stops.
    case failed(ServiceFailure)
}

extension LoopOutcome {
    /// What an `svc_loop` result means: `SVC_CONTINUE`, `SVC_DONE`, or a
    /// failure (a negative code, or a value above `SVC_DONE`, which is reserved).
    init(pluginResult result: Int32, file: String) {
        switch result {
        case 0: self = .continue
        case 1: self = .done
        case ..<0: self = .failed(ServiceFailure(code: result, message: "\(file): svc_loop returned error \(result)"))
        default: self = .failed(ServiceFailure(code: result, message: "\(file): svc_loop returned \(result), a reserved value"))
        }
    }
}
