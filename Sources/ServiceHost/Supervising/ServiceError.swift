/// Why the scheduler refused an order.
public struct ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case illegalTransition = "illegal transition"
            case unknownService = "unknown service"
            case duplicateService = "duplicate service"
            case shutDown = "shut down"
            case invalidConfiguration = "invalid configuration"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The order asks for a state change the state machine forbids.
        public static let illegalTransition = Code(.illegalTransition)
        /// No service has that name.
        public static let unknownService = Code(.unknownService)
        /// A service with that name is already added.
        public static let duplicateService = Code(.duplicateService)
        /// The scheduler has shut down and takes no more orders.
        public static let shutDown = Code(.shutDown)
        /// The service's configuration has a value out of bounds (see ``Limits``).
        public static let invalidConfiguration = Code(.invalidConfiguration)

        public var description: String { base.rawValue }
    }

    public let code: Code
    public let service: String
    public let reason: String

    public init(_ code: Code, service: String, reason: String) {
        self.code = code
        self.service = service
        self.reason = reason
    }

    public var description: String { "\(service): \(reason)" }
}
