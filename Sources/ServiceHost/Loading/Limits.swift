/// Every bound the host puts on what plugin files, sidecars and workers hand it.
///
/// Plugin files and sidecars come from careless or hostile hands; each of
/// these bounds is checked before anything is allocated or parsed, so a
/// sparse 64 GB file, a 400 KB nest of dotted keys or a `delay_ms` of 10^13
/// is refused with a reason instead of exhausting or crashing the host.
public struct Limits: Sendable, Equatable {
    /// The largest plugin file the host reads, in bytes. Default ``defaultMaxPluginSize`` (512 MiB).
    public var maxPluginSize: Int64

    public init(maxPluginSize: Int64 = Limits.defaultMaxPluginSize) {
        self.maxPluginSize = maxPluginSize
    }

    /// 512 MiB: far above any real plugin, far below what would exhaust the host.
    public static let defaultMaxPluginSize: Int64 = 512 * 1024 * 1024

    /// The largest sidecar file, in bytes (1 MiB).
    public static let maxSidecarSize = 1024 * 1024

    /// The deepest nesting of tables, arrays and dotted keys in a sidecar.
    /// toml++ (under TOMLKit 0.6) recurses once per level and overflows its
    /// stack on a few thousand; no real sidecar comes near 64.
    public static let maxSidecarNesting = 64

    /// The largest value of any `_ms` key, and of any duration in a
    /// ``ServiceConfiguration``: 2^31−1 ms, about 24.8 days. Doubling it (restart
    /// backoff) or adding it to the present (deadlines) cannot overflow.
    public static let maxDurationMilliseconds: Int64 = Int64(Int32.max)

    /// ``maxDurationMilliseconds`` as a `Duration`.
    public static let maxDuration: Duration = .milliseconds(maxDurationMilliseconds)

    /// The largest encoded message between the host and a worker process,
    /// either way (2 MiB): a whole sidecar's `[config]` plus room for its
    /// encoding's overhead and the other fields. A larger one is refused with its size.
    public static let maxWorkerMessage = maxSidecarSize + 1024 * 1024

    /// The most bytes a service keeps across its runs (`SVC_STATE_MAX_SIZE`, 16 MiB).
    public static let maxKeptState = 16 * 1024 * 1024

    /// The most descriptors a service keeps across its runs (`SVC_FD_MAX_KEPT`, 256).
    public static let maxKeptDescriptors = 256

    /// The longest log line a plugin sends through the host (32 KiB), in either
    /// isolation; longer ones are cut and marked as truncated.
    public static let maxLogLine = 32 * 1024

    /// The longest reason a load-time scan reports (16 KiB): a plugin's
    /// `dlerror` text is the plugin's to choose.
    public static let maxLoadFailureReason = 16 * 1024

    /// How long the fork server may take to answer one request (2 s); one
    /// that does not is replaced.
    public static let forkServerAnswerTimeout = Duration.seconds(2)

    /// How long a plugin's load-time scan may take when its sidecar sets no
    /// `start_timeout_ms` (5 s).
    public static let defaultScanTimeout = Duration.seconds(5)

    /// The limits the host uses unless configured otherwise.
    public static let `default` = Limits()
}
