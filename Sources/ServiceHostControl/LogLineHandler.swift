import Foundation
import Logging
import ServiceHost
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Writes log lines as machines read them (``LogFormat/json``,
/// ``LogFormat/journal``) to a descriptor, one `write` per line under a lock,
/// so that lines from many threads never interleave.
///
/// JSON keys: `time` (RFC 3339, UTC, microseconds), `level` (swift-log's
/// names), `message`, `origin` (`host`, or `plugin` for what a plugin
/// logged), `service` when the line is about one, then the line's other
/// metadata as strings, a lifecycle event's spread out (`event`, `start`,
/// `reason`, …; see ``LifecycleEvent``).
/// Every string is escaped, so a plugin's text can never end its line or
/// forge another.
public struct LogLineHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    private let format: LogFormat
    private let output: Output

    /// - Parameter descriptor: where lines go; standard error by default.
    public init(format: LogFormat, logLevel: Logger.Level, descriptor: Int32 = STDERR_FILENO) {
        self.format = format
        self.logLevel = logLevel
        output = Output(descriptor: descriptor)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let own = event.metadata { fields.merge(own) { _, new in new } }
        // A lifecycle event's fields spread out: "event":"started","start":"1".
        if case .dictionary(var lifecycle)? = fields.removeValue(forKey: LifecycleEvent.key) {
            fields[LifecycleEvent.key] = lifecycle.removeValue(forKey: "name")
            fields.merge(lifecycle) { own, _ in own }
        }
        let line = switch format {
        case .json: Self.json(level: event.level, message: event.message.description, fields: fields, time: Date())
        case .journal, .text: Self.journal(level: event.level, message: event.message.description, fields: fields)
        }
        output.write(line)
    }

    /// journald's priority for each level (syslog's: 7 debug … 2 critical).
    public static func priority(of level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func journal(level: Logger.Level, message: String, fields: Logger.Metadata) -> String {
        var line = "<\(priority(of: level))>"
        if let service = fields["service"] { line += "\(service): " }
        line += message
        let rest = fields.filter { $0.key != "service" && $0.key != "origin" }.sorted { $0.key < $1.key }
        if !rest.isEmpty { line += " [" + rest.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "]" }
        // A line break would start a new journal entry at the default priority.
        return line.replacingOccurrences(of: "\n", with: "\\n") + "\n"
    }

    static func json(level: Logger.Level, message: String, fields: Logger.Metadata, time: Date) -> String {
        var out = "{\"time\":\"\(rfc3339(time))\",\"level\":\"\(level.rawValue)\",\"message\":"
        appendQuoted(message, to: &out)
        out += ",\"origin\":"
        appendQuoted(fields["origin"].map { "\($0)" } ?? "host", to: &out)
        if let service = fields["service"] {
            out += ",\"service\":"
            appendQuoted("\(service)", to: &out)
        }
        for (key, value) in fields.sorted(by: { $0.key < $1.key })
        where !["time", "level", "message", "origin", "service"].contains(key) {
            out += ","
            appendQuoted(key, to: &out)
            out += ":"
            appendQuoted("\(value)", to: &out)
        }
        return out + "}\n"
    }

    /// `2026-12-02T03:04:05.123456Z`.
    static func rfc3339(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let micros = Int((interval - Double(seconds)) * 1_000_000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), min(micros, 999_999))
    }

    /// A JSON string literal: quotes, backslashes and every control character escaped.
    private static func appendQuoted(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{2028}", "\u{2029}": out += String(format: "\\u%04x", scalar.value)
            case _ where scalar.value < 0x20 || scalar.value == 0x7f: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// The descriptor, written whole line by whole line.
    private final class Output: Sendable {
        private let descriptor: Int32
        private let lock = Mutex<Void>(())

        init(descriptor: Int32) { self.descriptor = descriptor }

        func write(_ line: String) {
            var bytes = Array(line.utf8)
            lock.withLock { _ in
                bytes.withUnsafeMutableBytes { buffer in
                    var offset = 0
                    while offset < buffer.count {
                        let written = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                        if written < 0 {
                            if errno == EINTR { continue }
                            return
                        }
                        offset += written
                    }
                }
            }
        }
    }
}
