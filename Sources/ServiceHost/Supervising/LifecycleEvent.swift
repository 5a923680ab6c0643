import Logging

/// A lifecycle event as a log line's structured fields, so that a log
/// pipeline can count events without parsing prose. Stable (README, "Logs"):
/// `name` is one of `started`, `stopped`, `restarting`, `reloaded`,
/// `reload_refused`, `rolled_back`, `failed`, `hung`; the other keys are
/// documented beside each case.
///
/// The fields sit under one metadata key, ``key``, as a dictionary, so that
/// a handler for people can leave them out (the message says the same in
/// prose) and one for machines can spread them out
/// (`"event":"started","start":"1"`). A value of this type is cheap to
/// carry; the dictionary is built by ``metadata(service:)`` only when the
/// line is logged (pass it as the `metadata:` argument, which swift-log
/// evaluates only at an enabled level), so a restart at a quiet log level
/// pays nothing for it.
public enum LifecycleEvent: Sendable, Equatable {
    /// `start`: the start count; `version` when the plugin has one.
    case started(start: Int, version: String?)
    /// `reason`: `ordered`, `stopped_itself`, `done`, `error`, `crash` or
    /// `watchdog`; with a failure, `code` and `phase` (`create` or `loop`).
    case stopped(StopReason)
    /// `attempt`, `delay_ms`, `reason` (a ``RestartCause``).
    case restarting(attempt: Int, delay: Duration, cause: RestartCause)
    /// `from` and `to` (versions); `to` is absent when refused or rolled back.
    case reload(ReloadResult, from: String, to: String?)
    /// `reason`, in prose.
    case failed(reason: String)
    /// `reason`, in prose.
    case hung(reason: String)

    /// The metadata key the fields are under, as a dictionary.
    public static let key = "event"

    /// The line's metadata: the event's fields under ``key``, and `service` when given.
    public func metadata(service: String? = nil) -> Logger.Metadata {
        var metadata: Logger.Metadata = [Self.key: .dictionary(fields)]
        if let service { metadata["service"] = "\(service)" }
        return metadata
    }

    private var fields: Logger.Metadata {
        switch self {
        case .started(let start, let version):
            var fields: Logger.Metadata = ["name": "started", "start": "\(start)"]
            if let version { fields["version"] = "\(version)" }
            return fields
        case .stopped(let reason):
            switch reason {
            case .ordered: return ["name": "stopped", "reason": "ordered"]
            case .requested: return ["name": "stopped", "reason": "stopped_itself"]
            case .finished: return ["name": "stopped", "reason": "done"]
            case .failed(let failure):
                return ["name": "stopped", "reason": "\(RestartCause(after: reason).rawValue)", "code": "\(failure.code)", "phase": "loop"]
            case .startFailed(let failure):
                return ["name": "stopped", "reason": "\(RestartCause(after: reason).rawValue)", "code": "\(failure.code)", "phase": "create"]
            }
        case .restarting(let attempt, let delay, let cause):
            return ["name": "restarting", "attempt": "\(attempt)", "delay_ms": "\(delay.milliseconds)", "reason": "\(cause.rawValue)"]
        case .reload(let result, let from, let to):
            let name = switch result {
            case .ok: "reloaded"
            case .refused: "reload_refused"
            case .rolledBack: "rolled_back"
            }
            var fields: Logger.Metadata = ["name": "\(name)", "from": "\(from)"]
            if let to { fields["to"] = "\(to)" }
            return fields
        case .failed(let reason):
            return ["name": "failed", "reason": "\(reason)"]
        case .hung(let reason):
            return ["name": "hung", "reason": "\(reason)"]
        }
    }
}
