import Logging
import ServiceHost

/// swift-log's own line for people (`StreamLogHandler`), without a lifecycle
/// event's structured fields: the message says the same in prose, and the
/// fields are for machines (`--log-format json` or `journal`).
public struct TextLogHandler: LogHandler {
    private var stream: StreamLogHandler

    public init(label: String) {
        stream = StreamLogHandler.standardError(label: label)
    }

    public var logLevel: Logger.Level {
        get { stream.logLevel }
        set { stream.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { stream.metadata }
        set { stream.metadata = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { stream.metadataProvider }
        set { stream.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { stream[metadataKey: key] }
        set { stream[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        var event = event
        event.metadata?.removeValue(forKey: LifecycleEvent.key)
        stream.log(event: event)
    }
}
