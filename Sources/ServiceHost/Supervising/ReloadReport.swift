/// What a reload did (or, dry, would do) to make the running services match
/// the plugins directory: what SIGHUP logs, `servicehost ctl reload` prints
/// and the control API serves (snake_case keys).
public struct ReloadReport: Sendable, Codable, Equatable {
    /// A file or sidecar the reload could not use, and why; what ran before it is left as it was.
    public struct Refusal: Sendable, Codable, Equatable {
        public var file: String
        public var reason: String
    }

    /// Nothing was done: this is what a reload would do now.
    public var dryRun: Bool
    /// New plugins, loaded and started.
    public var added: [String] = []
    /// Services whose plugin file or sidecar changed, restarted on the new version or values.
    public var changed: [String] = []
    /// Services whose plugin file is gone, stopped (dependents first) and removed.
    public var removed: [String] = []
    /// Services left as they were.
    public var unchanged: [String] = []
    /// Failed services started once more.
    public var retried: [String] = []
    public var refused: [Refusal] = []

    /// One line for a log: "1 added, 2 changed, 0 removed, 5 unchanged, 1 retried, 0 refused".
    public var summary: String {
        "\(added.count) added, \(changed.count) changed, \(removed.count) removed, \(unchanged.count) unchanged, "
            + "\(retried.count) retried, \(refused.count) refused\(dryRun ? " (dry run: nothing done)" : "")"
    }
}
