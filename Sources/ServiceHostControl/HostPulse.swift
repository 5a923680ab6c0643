import ServiceHost
import Synchronization

/// The supervisor's pulse, for `/livez`: the host's main loop beats it on
/// every tick, right after asking the scheduler how its services stand (which
/// takes the supervisor's lock), so a wedged supervisor or main loop stops
/// the beats, and systemd's watchdog pings with them. Also notes when the
/// initial start is complete, for `/readyz`.
public final class HostPulse: Sendable {
    /// How often the main loop beats: once a second (more often when systemd's watchdog asks for it).
    public static let defaultInterval = Duration.seconds(1)
    /// How old the last beat may be before the host is reported not alive. Default 5 s.
    public let staleAfter: Duration

    private let base: ContinuousClock.Instant
    /// The last beat, in nanoseconds after `base`.
    private let last: Atomic<Int64>
    private let started = Atomic<Bool>(false)

    /// The pulse begins with a beat at `now`.
    public init(staleAfter: Duration = .seconds(5), now: ContinuousClock.Instant = .now) {
        self.staleAfter = staleAfter
        base = now
        last = Atomic(0)
    }

    public func beat(at now: ContinuousClock.Instant = .now) {
        last.store((now - base).nanoseconds, ordering: .relaxed)
    }

    /// How long ago the last beat was.
    public func age(at now: ContinuousClock.Instant = .now) -> Duration {
        max(now - (base + .nanoseconds(last.load(ordering: .relaxed))), .zero)
    }

    public func isAlive(at now: ContinuousClock.Instant = .now) -> Bool {
        age(at: now) <= staleAfter
    }

    /// The initial start of every service was ordered.
    public func initialStartComplete() {
        started.store(true, ordering: .relaxed)
    }

    public var hasStarted: Bool { started.load(ordering: .relaxed) }
}
