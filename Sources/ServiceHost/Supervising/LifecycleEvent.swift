import Logging

/// The structured fields of a lifecycle log line, so that a log pipeline
/// can count events without parsing prose. Stable (README, "Logs"): `name`
/// is one of `started`, `stopped`, `restarting`, `reloaded`,
/// `reload_refused`, `rolled_back`, `failed`, `hung`; the other keys are
/// documented beside each event. The `service` key is added by whoever logs.
///
/// All under one metadata key, ``key``, so that a handler for people can
/// leave them out (the message says the same in prose) and one for machines
/// can spread them out (`"event":"started","start":"1"`).
public enum LifecycleEvent {
    /// The metadata key the fields are under, as a dictionary.
    public static let key = "event"

    private static func event(_ fields: Logger.Metadata) -> Logger.Metadata {
        [key: .dictionary(fields)]
    }

    static func started(start: Int, version: String?) -> Logger.Metadata {
        var fields: Logger.Metadata = ["name": "started", "start": "\(start)"]
        if let version { fields["version"] = "\(version)" }
        return event(fields)
    }

    /// `reason`: `ordered`, `stopped_itself`, `done`, `error`, `crash` or
    /// `watchdog`; `code` with a failure; `phase` is `create` for a start that failed.
    static func stopped(_ reason: StopReason) -> Logger.Metadata {
        let fields: Logger.Metadata = switch reason {
        case .ordered: ["name": "stopped", "reason": "ordered"]
        case .requested: ["name": "stopped", "reason": "stopped_itself"]
        case .finished: ["name": "stopped", "reason": "done"]
        case .failed(let failure):
            ["name": "stopped", "reason": "\(RestartCause(after: reason).rawValue)", "code": "\(failure.code)", "phase": "loop"]
        case .startFailed(let failure):
            ["name": "stopped", "reason": "\(RestartCause(after: reason).rawValue)", "code": "\(failure.code)", "phase": "create"]
        }
        return event(fields)
    }

    static func restarting(attempt: Int, delay: Duration, cause: RestartCause) -> Logger.Metadata {
        event(["name": "restarting", "attempt": "\(attempt)", "delay_ms": "\(delay.milliseconds)", "reason": "\(cause.rawValue)"])
    }

    /// `from` and `to`: version strings; `to` is absent when the new version was refused or rolled back.
    static func reload(_ result: ReloadResult, from: String, to: String?) -> Logger.Metadata {
        let name = switch result {
        case .ok: "reloaded"
        case .refused: "reload_refused"
        case .rolledBack: "rolled_back"
        }
        var fields: Logger.Metadata = ["name": "\(name)", "from": "\(from)"]
        if let to { fields["to"] = "\(to)" }
        return event(fields)
    }

    static func failed(reason: String) -> Logger.Metadata {
        event(["name": "failed", "reason": "\(reason)"])
    }

    static func hung(reason: String) -> Logger.Metadata {
        event(["name": "hung", "reason": "\(reason)"])
    }
}
