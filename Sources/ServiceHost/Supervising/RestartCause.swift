/// Why the host started a service again: a small, stable set, so that
/// metrics can count restarts by it (`servicehost_service_restarts_total{reason=…}`)
/// without a label value per error message.
public enum RestartCause: String, Sendable, CaseIterable, Codable {
    /// Its loop returned `SVC_DONE`, and its policy restarts it.
    case done
    /// It asked to stop (`request_stop`), and its policy restarts it.
    case stoppedItself = "stopped_itself"
    /// A call returned an error (`svc_create`, `svc_loop`), or it could not be loaded.
    case error
    /// Its worker process died: a signal, an unexpected exit (process isolation).
    case crash
    /// A call ran past `watchdog_ms` or `start_timeout_ms`.
    case watchdog
    /// Its plugin file changed, and a reload restarted it.
    case reload
    /// An operator ordered the restart (`servicehost ctl restart`, the control API).
    case `operator`

    /// The cause of a restart that follows a run which ended for `reason`.
    init(after reason: StopReason) {
        switch reason {
        case .finished: self = .done
        case .requested: self = .stoppedItself
        // Not restarted by the host; counted as the order that follows it.
        case .ordered: self = .operator
        case .failed(let failure), .startFailed(let failure):
            switch failure.cause {
            case .error: self = .error
            case .crash: self = .crash
            case .watchdog: self = .watchdog
            }
        }
    }
}
