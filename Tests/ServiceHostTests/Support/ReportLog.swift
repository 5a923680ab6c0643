import Synchronization

/// Lines noted from any thread or task, in the order they were noted.
final class ReportLog: Sendable {
    private let reports = Mutex<[String]>([])
    func add(_ report: String) { reports.withLock { $0.append(report) } }
    var all: [String] { reports.withLock { $0 } }
}
