/// The sidecar's `[config]` table. Values come as the host spells them in
/// TOML (strings as written, numbers and booleans in TOML); the typed reads
/// say "absent" with `nil` and "invalid" by throwing a ``PluginError`` that
/// names the key, the value and what was expected.
public struct PluginConfig: Sendable {
    private let host: HostCallbacks

    init(host: HostCallbacks) { self.host = host }

    /// The value of `key` as text (dotted keys reach nested tables); `nil` when absent.
    public subscript(key: String) -> String? { host.config(key) }

    /// `key` as a whole number (TOML's `_` separators allowed); `nil` when absent.
    public func int(_ key: String) throws(PluginError) -> Int? {
        guard let text = self[key] else { return nil }
        guard let value = Int(text.filter { $0 != "_" }) else { throw Self.invalid(key, text, "a whole number") }
        return value
    }

    /// `key` as a number; `nil` when absent.
    public func double(_ key: String) throws(PluginError) -> Double? {
        guard let text = self[key] else { return nil }
        guard let value = Double(text.filter { $0 != "_" }) else { throw Self.invalid(key, text, "a number") }
        return value
    }

    /// `key` as `true` or `false`; `nil` when absent.
    public func bool(_ key: String) throws(PluginError) -> Bool? {
        switch self[key] {
        case nil: return nil
        case "true": return true
        case "false": return false
        case let text?: throw Self.invalid(key, text, "true or false")
        }
    }

    public func int(_ key: String, default fallback: Int) throws(PluginError) -> Int { try int(key) ?? fallback }
    public func double(_ key: String, default fallback: Double) throws(PluginError) -> Double { try double(key) ?? fallback }
    public func bool(_ key: String, default fallback: Bool) throws(PluginError) -> Bool { try bool(key) ?? fallback }

    private static func invalid(_ key: String, _ text: String, _ expected: String) -> PluginError {
        PluginError(code: -22, "[config] \(key) = \(text) is not \(expected)")
    }
}
