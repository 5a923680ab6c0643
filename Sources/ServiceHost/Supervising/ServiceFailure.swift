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
