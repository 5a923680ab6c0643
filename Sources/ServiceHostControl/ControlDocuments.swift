import Foundation
import ServiceHost

/// The JSON documents of the control API, version 1 (`/v1/…`). Keys are
/// snake_case, times RFC 3339; fields are only ever added.
public enum ControlDocument {
    /// `GET /v1/host`.
    public struct Host: Sendable, Codable, Equatable {
        public var version: String
        public var pid: Int32
        /// When the host started.
        public var started: Date
        /// Seconds since it started.
        public var uptime: Double
        public var pluginsDirectory: String
        /// How many services there are in each state (every state is listed, zero or not).
        public var states: [String: Int]
        public var services: Int
    }

    /// `GET /v1/services`.
    public struct Services: Sendable, Codable, Equatable {
        public var services: [ServiceStatus]

        public init(services: [ServiceStatus]) {
            self.services = services
        }
    }

    /// The answer to `POST /v1/services/NAME/start|stop|restart`.
    public struct Order: Sendable, Codable, Equatable {
        /// The service as it stands once the order was carried out (and waited for, if asked).
        public var service: ServiceStatus
        /// Whether the wait asked for ended in the state it waited for; `nil` without a wait.
        public var reached: Bool?
    }

    /// `GET /v1/services/NAME/logs`.
    public struct Logs: Sendable, Codable, Equatable {
        public var service: String
        public var lines: [ServiceLogRing.Line]
    }

    /// Any refusal: `{"error": {"code": "unknown_service", "message": "…"}}`.
    public struct Failure: Sendable, Codable, Equatable, Error {
        public struct Body: Sendable, Codable, Equatable {
            /// Stable, machine-readable (see README, "Operating").
            public var code: String
            public var message: String
        }

        public var error: Body

        public init(code: String, message: String) {
            error = Body(code: code, message: message)
        }
    }

    /// The encoder every document goes out with.
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// The decoder `servicehost ctl` reads them with.
    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
