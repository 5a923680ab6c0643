import Logging

/// A log handler that keeps each line that names a service (metadata key
/// `service`) in a ``ServiceLogRing``; combined with the handler that prints,
/// through swift-log's `MultiplexLogHandler`.
public struct LogRingHandler: LogHandler {
    private let ring: ServiceLogRing
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level

    public init(ring: ServiceLogRing, logLevel: Logger.Level) {
        self.ring = ring
        self.logLevel = logLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        guard let service = event.metadata?["service"] ?? metadata["service"] else { return }
        ring.append(service: "\(service)", level: event.level, message: event.message.description)
    }
}
