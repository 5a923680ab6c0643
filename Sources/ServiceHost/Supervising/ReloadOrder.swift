/// In which order a reload replaces the running version of a service's plugin.
public struct ReloadOrder: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
        case restart
        case overlap
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// The old version stops (`svc_stop`), then the new one is created: never
    /// two versions at once, but a gap while the new one starts. The default.
    public static let restart = ReloadOrder(.restart)
    /// The new version is created while the old one runs (in process
    /// isolation, in a second worker) and reads what the old one kept so far;
    /// the old one is told to stop only once the new one's `svc_create`
    /// returned 0, and keeps running if it did not. No gap.
    public static let overlap = ReloadOrder(.overlap)

    /// The order spelled as in a sidecar: `restart` or `overlap`.
    public init?(name: String) {
        guard let base = Base(rawValue: name) else { return nil }
        self.init(base)
    }

    public var description: String { base.rawValue }
}
