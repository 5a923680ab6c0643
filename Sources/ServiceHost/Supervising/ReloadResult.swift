/// How one hot reload of a plugin file went, as metrics count it
/// (`servicehost_plugin_reloads_total{result=…}`).
public enum ReloadResult: String, Sendable, CaseIterable, Codable {
    /// The new version was loaded and created; it runs.
    case ok
    /// The new file was refused before any of its code ran in the service
    /// (not a plugin, wrong ABI, failed its load-time scan); the old version runs on.
    case refused
    /// The new version loaded but its `svc_create` failed; the old version was started again.
    case rolledBack = "rolled_back"
}
