/// How one service is run and supervised: the contents of its sidecar file.
///
/// Every property has the default a service gets without a sidecar file.
public struct ServiceConfiguration: Sendable, Equatable {
    /// When the service is restarted after stopping on its own. `nil` (the
    /// default) follows the host: ``RestartPolicy/always`` with recovery on,
    /// ``RestartPolicy/never`` with recovery off. Sidecar key `restart`.
    public var restart: RestartPolicy?
    /// How long to wait before the first start. Default zero. Sidecar key `delay_ms`.
    public var delay: Duration
    /// The pause between two `svc_loop` calls. Default zero. Sidecar key `interval_ms`.
    public var interval: Duration
    /// How many restarts are allowed; `nil` (the default, `-1` in a sidecar)
    /// means unlimited. When they are used up the service stays stopped and is
    /// marked failed. Sidecar key `retries`.
    public var retries: Int?
    /// The wait before the second of several consecutive restarts; each
    /// further one waits twice as long as the last. The first restart after a
    /// healthy run is immediate. Default 100 ms. Sidecar key `backoff_initial_ms`.
    public var backoffInitial: Duration
    /// The longest wait between restarts. Default 30 s. Sidecar key `backoff_max_ms`.
    public var backoffMax: Duration
    /// A run this long counts as healthy and resets the backoff. Default 10 s.
    /// Sidecar key `healthy_after_ms`.
    public var healthyAfter: Duration
    /// More than this many restarts within ``restartWindow`` marks the service
    /// failed, as an intensity limit does in OTP and systemd. Default 10; 0 means
    /// no limit. Sidecar key `restart_limit`.
    public var restartLimit: Int
    /// The window ``restartLimit`` counts restarts in. Default 60 s. Sidecar key `restart_window_ms`.
    public var restartWindow: Duration
    /// Where the plugin runs; `nil` (the default) follows the host's default
    /// (thread). Sidecar key `isolation`.
    public var isolation: Isolation?
    /// How long a stopping service's current `svc_loop` call gets to return
    /// before the host gives up on it: a worker process is killed, a thread is
    /// marked hung and abandoned. Default 5 s. Sidecar key `stop_timeout_ms`.
    public var stopTimeout: Duration
    /// A single `svc_loop` call running longer than this is a hang; `nil` (the
    /// default, 0 in a sidecar) is off. Sidecar key `watchdog_ms`.
    public var watchdog: Duration?
    /// An `svc_create` that has not returned after this long is a failed
    /// start; `nil` (the default, 0 in a sidecar) is off. Sidecar key `start_timeout_ms`.
    public var startTimeout: Duration?
    /// The services that must have started before this one starts; when one of
    /// them stops, this one is stopped first and started again once it is
    /// back. Default none. Sidecar key `requires`.
    public var requires: [String]
    /// How a reload replaces the running version: ``ReloadOrder/restart``
    /// (the default) or ``ReloadOrder/overlap``. Sidecar key `reload`.
    public var reload: ReloadOrder
    /// The sidecar's `[config]` table, flattened to dotted keys with values
    /// as text; handed to the plugin through `svc_host.config`.
    public var settings: [String: String]

    public init(
        restart: RestartPolicy? = nil,
        delay: Duration = .zero,
        interval: Duration = .zero,
        retries: Int? = nil,
        backoffInitial: Duration = .milliseconds(100),
        backoffMax: Duration = .seconds(30),
        healthyAfter: Duration = .seconds(10),
        restartLimit: Int = 10,
        restartWindow: Duration = .seconds(60),
        isolation: Isolation? = nil,
        stopTimeout: Duration = .seconds(5),
        watchdog: Duration? = nil,
        startTimeout: Duration? = nil,
        requires: [String] = [],
        reload: ReloadOrder = .restart,
        settings: [String: String] = [:]
    ) {
        self.reload = reload
        self.restart = restart
        self.delay = delay
        self.interval = interval
        self.retries = retries
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
        self.healthyAfter = healthyAfter
        self.restartLimit = restartLimit
        self.restartWindow = restartWindow
        self.isolation = isolation
        self.stopTimeout = stopTimeout
        self.watchdog = watchdog
        self.startTimeout = startTimeout
        self.requires = requires
        self.settings = settings
    }
}

extension ServiceConfiguration {
    /// What is out of bounds in this configuration, naming the sidecar key,
    /// as a sentence; `nil` when every value is within ``Limits``.
    ///
    /// Every duration must lie in 0...``Limits/maxDuration`` (2^31−1 ms),
    /// so that no delay, deadline or doubled backoff can overflow.
    public var problem: String? {
        let durations: [(String, Duration?)] = [
            ("delay_ms", delay), ("interval_ms", interval), ("backoff_initial_ms", backoffInitial),
            ("backoff_max_ms", backoffMax), ("healthy_after_ms", healthyAfter), ("restart_window_ms", restartWindow),
            ("stop_timeout_ms", stopTimeout), ("watchdog_ms", watchdog), ("start_timeout_ms", startTimeout),
        ]
        for case let (key, duration?) in durations {
            if duration < .zero {
                return "'\(key)' must not be negative, found \(duration)"
            }
            if duration > Limits.maxDuration {
                return "'\(key)' must be at most \(Limits.maxDurationMilliseconds) ms (about 24.8 days), found \(duration)"
            }
        }
        if let retries, retries < 0 { return "'retries' must not be negative (nil is unlimited), found \(retries)" }
        if restartLimit < 0 { return "'restart_limit' must not be negative, found \(restartLimit)" }
        return nil
    }
}
