import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Loads every new or changed plugin file once in a throwaway process before
/// the host (or a worker) loads it for real, as GStreamer's plugin scanner
/// does: the plugin's constructors run there, so one that crashes, calls
/// `exit` or never returns refuses that version of the file with a reason
/// and harms nothing else.
///
/// The scan process is forked by the fork server (see ``ScanProcess``), which
/// already has the Swift runtime loaded: a scan costs a fork and a `dlopen`.
/// Verdicts are cached by file identity, so a restart of an unchanged file
/// pays nothing.
final class PluginScanner: Sendable {
    /// How long a scan may take when the service sets no `start_timeout_ms`.
    static let defaultTimeout = Limits.defaultScanTimeout

    private let launcher: WorkerLauncher
    /// Keyed by content when known (a file rewritten with bytes already
    /// scanned, as alternating deployments do, pays nothing), else by identity.
    private let verdicts = Mutex<[Key: Verdict]>([:])

    private enum Key: Hashable, Sendable {
        case content(ContentDigest)
        case identity(FileIdentity)
    }
    private let scans = Atomic<Int>(0)

    /// What a scan found; the reason of a refusal names the user's file.
    enum Verdict: Sendable, Equatable {
        case loads(version: String?)
        case refused(PluginError)
    }

    init(launcher: WorkerLauncher) {
        self.launcher = launcher
    }

    /// How many scan processes were started (a cached verdict starts none).
    var scanCount: Int { scans.load(ordering: .relaxed) }

    /// Scans `staged` unless a verdict for its file identity is known.
    /// - Throws: the refusal, as the ``PluginError`` `run` logs.
    func check(_ staged: StagedPlugin, timeout: Duration?) throws(PluginError) {
        if case .refused(let error) = verdict(for: staged, timeout: timeout) { throw error }
    }

    func verdict(for staged: StagedPlugin, timeout: Duration?) -> Verdict {
        let key: Key = staged.content.map(Key.content) ?? .identity(staged.identity)
        if let known = verdicts.withLock({ $0[key] }) { return known }
        let verdict: Verdict
        do {
            verdict = try scan(staged, timeout: timeout ?? Self.defaultTimeout)
        } catch {
            // A failure to start a scan says nothing about the file: not cached.
            return .refused(PluginError(.loadFailed, file: staged.file, reason: "cannot be scanned before loading: \(error)"))
        }
        verdicts.withLock { $0[key] = verdict }
        return verdict
    }

    private func scan(_ staged: StagedPlugin, timeout: Duration) throws(WorkerLauncher.LaunchError) -> Verdict {
        let file = staged.file
        // Until the scan process says it starts loading, the default allowance
        // (at least `timeout`) covers forking it; then `timeout` covers loading.
        let allowance = max(timeout, Self.defaultTimeout)
        var deadline = ContinuousClock.now.advanced(by: allowance)
        var loading = false
        let (channel, forked) = try launcher.launchScan()
        scans.add(1, ordering: .relaxed)
        defer { channel.close() }
        let refused = { (reason: String) in Verdict.refused(PluginError(.loadFailed, file: file, reason: reason)) }
        guard channel.send(.scan(privateCopy: staged.privateCopy), until: deadline).succeeded else {
            kill(forked.pid, SIGKILL)
            _ = launcher.reap(forked)
            throw WorkerLauncher.LaunchError(description: "the scan process did not take its request")
        }
        while true {
            switch channel.receive(until: deadline) {
            case .message(.loading) where !loading:
                loading = true
                deadline = ContinuousClock.now.advanced(by: timeout)
            case .message(.loaded(let version)):
                _ = launcher.reap(forked)
                return .loads(version: version)
            case .message(.loadFailed(let code, let reason)):
                _ = launcher.reap(forked)
                let reported = reason.replacingOccurrences(of: staged.privateCopy, with: file)
                return .refused(PluginError(PluginError.Code(named: code) ?? .loadFailed, file: file, reason: reported))
            case .message, .woken:
                continue
            case .malformed(let what):
                kill(forked.pid, SIGKILL)
                _ = launcher.reap(forked)
                return refused("the scan process sent \(what) while loading")
            case .timedOut:
                kill(forked.pid, SIGKILL)
                _ = launcher.reap(forked)
                guard loading else {
                    // Not the file's fault: refused this time, but no verdict is cached.
                    throw WorkerLauncher.LaunchError(
                        description: "the scan process did not start within \(allowance.milliseconds) ms")
                }
                return refused("did not finish loading within \(timeout.milliseconds) ms")
            case .endOfFile:
                let status = launcher.reap(forked)
                guard !launcher.hasShutDown else {
                    // Ended with its fork server at the host's shutdown: says nothing of the file.
                    throw WorkerLauncher.LaunchError(description: "the host shut down while it was loading")
                }
                return switch status.ending {
                case .killed(let signal): refused("constructor killed by \(ExitStatus.name(of: signal)) while loading")
                case .exited(let code): refused("exited with status \(code) while loading")
                case .unknown, .closedItsConnection, .survivedKill: refused("ended while loading (status unknown)")
                case .killedWithForkServer: refused("ended while loading: the scan \(status)")
                }
            }
        }
    }
}
