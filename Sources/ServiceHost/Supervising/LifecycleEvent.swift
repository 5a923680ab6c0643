import Logging

/// The structured fields of a lifecycle log line, so that a log pipeline
/// can count events without parsing prose. Stable (README, "Logs"): `event`
/// is one of `started`, `stopped`, `restarting`, `reloaded`,
/// `reload_refused`, `rolled_back`, `failed`, `hung`; the other keys are
/// documented beside each event. The `service` key is added by whoever logs.
enum LifecycleEvent {
    static func started(start: Int, version: String?) -> Logger.Metadata {
        var fields: Logger.Metadata = ["event": "started", "start": "\(start)"]
        if let version { fields["version"] = "\(version)" }
        return fields
    }

    /// `reason`: `ordered`, `stopped_itself`, `done`, `error`, `crash` or
    /// `watchdog`; `code` with a failure; `phase` is `create` for a start that failed.
    static func stopped(_ reason: StopReason) -> Logger.Metadata {
        switch reason {
        case .ordered: ["event": "stopped", "reason": "ordered"]
        case .requested: ["event": "stopped", "reason": "stopped_itself"]
        case .finished: ["event": "stopped", "reason": "done"]
        case .failed(let failure):
            ["event": "stopped", "reason": "\(RestartCause(after: reason).rawValue)", "code": "\(failure.code)", "phase": "loop"]
        case .startFailed(let failure):
            ["event": "stopped", "reason": "\(RestartCause(after: reason).rawValue)", "code": "\(failure.code)", "phase": "create"]
        }
    }

    static func restarting(attempt: Int, delay: Duration, cause: RestartCause) -> Logger.Metadata {
        ["event": "restarting", "attempt": "\(attempt)", "delay_ms": "\(delay.milliseconds)", "reason": "\(cause.rawValue)"]
    }

    /// `from` and `to`: version strings; `to` is absent when the new version was refused or rolled back.
    static func reload(_ result: ReloadResult, from: String, to: String?) -> Logger.Metadata {
        let event = switch result {
        case .ok: "reloaded"
        case .refused: "reload_refused"
        case .rolledBack: "rolled_back"
        }
        var fields: Logger.Metadata = ["event": "\(event)", "from": "\(from)"]
        if let to { fields["to"] = "\(to)" }
        return fields
    }

    static func failed(reason: String) -> Logger.Metadata {
        ["event": "failed", "reason": "\(reason)"]
    }

    static func hung(reason: String) -> Logger.Metadata {
        ["event": "hung", "reason": "\(reason)"]
    }
}
