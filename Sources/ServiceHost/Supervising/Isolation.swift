/// Where a service's plugin code runs.
public struct Isolation: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Hashable, Sendable {
        case thread
        case process
    }

    private let base: Base
    private init(_ base: Base) { self.base = base }

    /// On a dedicated thread of the host process: the cheapest, but a crash in
    /// the plugin takes the host down, and a hung call can only be abandoned.
    public static let thread = Isolation(.thread)
    /// In a worker process of its own: a crash, `exit` or hang is contained,
    /// reported with its reason and restarted by policy; a restart costs a fork.
    public static let process = Isolation(.process)

    /// The isolation spelled as in a sidecar or on the command line: `thread` or `process`.
    public init?(name: String) {
        guard let base = Base(rawValue: name) else { return nil }
        self.init(base)
    }

    public var description: String { base.rawValue }
}
