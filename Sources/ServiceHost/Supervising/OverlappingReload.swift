/// What an overlapping reload (``ReloadOrder/overlap``) did.
enum OverlapOutcome: Equatable, Sendable {
    /// The new version took over; the old one stopped after it was created.
    case replaced
    /// The old version runs on: the file did not change, or the new version
    /// was refused or its `svc_create` failed (logged and reported as for any reload).
    case kept
    /// The service was not running (or stopped meanwhile): a plain restart does.
    case notRunning
}

/// A service that can create a new version of its plugin while the old one runs.
protocol OverlappingReload: ReloadableService {
    /// Creates the changed file's version beside the running one and, once
    /// its `svc_create` returned 0, stops the old one; blocks until then (at
    /// most the stop timeout past the old loop call). Off the cooperative pool;
    /// the manager runs one at a time per service.
    func reloadOverlapping() -> OverlapOutcome
}
