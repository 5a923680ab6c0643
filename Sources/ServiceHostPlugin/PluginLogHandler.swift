import Logging

/// Sends a plugin's swift-log lines to the host's log (`svc_host.log`),
/// metadata appended as `key=value`.
struct PluginLogHandler: LogHandler {
    let host: HostCallbacks
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = metadata
        if let own = event.metadata { fields.merge(own) { _, new in new } }
        var message = event.message.description
        if !fields.isEmpty {
            message += " " + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        host.log(level: Self.level(event.level), message)
    }

    /// The ABI's four levels (SVC_LOG_DEBUG … SVC_LOG_ERROR).
    static func level(_ level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: 0
        case .info, .notice: 1
        case .warning: 2
        case .error, .critical: 3
        }
    }
}
