/// A failure reported by a service: an error code and what it means.
///
/// Plugins report failures as negative codes; native services throw this
/// from ``BaseService/onCreate()`` or return it from ``BaseService/onLoop()``.
public struct ServiceFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure it was, for counting restarts by reason.
    public enum Cause: Sendable, Equatable {
        /// The service said so: an error code from a call, or a host-side error.
        case error
        /// Its worker process died (a signal, an unexpected exit, garbage on its socket).
        case crash
        /// A call ran past its limit (`watchdog_ms`, `start_timeout_ms`) and was cut short.
        case watchdog
    }

    public var code: Int32
    public var message: String
    public var cause: Cause

    public init(code: Int32, message: String, cause: Cause = .error) {
        self.code = code
        self.message = message
        self.cause = cause
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
