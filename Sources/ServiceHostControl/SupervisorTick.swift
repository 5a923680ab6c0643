import ServiceHost

/// What the host's main loop does on every tick: asks the supervisor how its
/// services stand, and only then beats the ``HostPulse`` (`/livez`), pings
/// systemd's watchdog, and refreshes systemd's status line when the counts
/// changed (at most once a second, so a flapping service cannot flood the
/// manager). Asking first is the point: the question takes the supervisor's
/// lock, so a wedged supervisor stops the beats and the pings, and systemd
/// or Kubernetes restarts the host.
public struct SupervisorTick: Sendable {
    /// How often systemd's status line may change at most.
    public static let statusInterval = Duration.seconds(1)

    private let systemd: SystemdNotifier?
    private let pulse: HostPulse
    private let counts: @Sendable () -> [ServiceStatus.State: Int]
    /// The status line systemd has, and when it got it.
    public private(set) var status: String
    private var statusSent: ContinuousClock.Instant

    /// - Parameter counts: the supervisor's answer (``Scheduler/stateCounts()``).
    public init(systemd: SystemdNotifier?, pulse: HostPulse, counts: @escaping @Sendable () -> [ServiceStatus.State: Int],
                now: ContinuousClock.Instant = .now) {
        self.systemd = systemd
        self.pulse = pulse
        self.counts = counts
        status = Self.summary(counts())
        statusSent = now
    }

    /// How often to tick: once a second, or every half watchdog period when systemd asks for more.
    public var interval: Duration {
        min(systemd?.watchdogInterval ?? HostPulse.defaultInterval, HostPulse.defaultInterval)
    }

    /// One tick. `refreshingStatus: false` while the host stops (the line says "stopping" already).
    /// - Parameter time: the tick's time, for tests; by default when the supervisor answered.
    public mutating func tick(at time: ContinuousClock.Instant? = nil, refreshingStatus: Bool = true) {
        let current = Self.summary(counts())
        let now = time ?? .now
        pulse.beat(at: now)
        if systemd?.watchdogInterval != nil { systemd?.send("WATCHDOG=1") }
        guard refreshingStatus, current != status, now - statusSent >= Self.statusInterval else { return }
        systemd?.send("STATUS=\(current)")
        (status, statusSent) = (current, now)
    }

    /// "12 running, 1 backoff, 0 failed": running and failed always, the other states when they have services.
    public static func summary(_ counted: [ServiceStatus.State: Int]) -> String {
        ServiceStatus.State.allCases.compactMap { state -> String? in
            let count = counted[state] ?? 0
            return count > 0 || state == .running || state == .failed ? "\(count) \(state.rawValue)" : nil
        }.joined(separator: ", ")
    }
}
