import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One loaded or staged version of a plugin file.
protocol PluginFileVersion: Sendable {
    /// The identity of the plugin file when this version was read.
    var identity: FileIdentity { get }
    /// The checked copy of the file this version was loaded from.
    var staged: StagedPlugin { get }
}

extension PluginImage: PluginFileVersion {}
extension StagedPlugin: PluginFileVersion {
    var staged: StagedPlugin { self }
}

/// Which version of its plugin file a service runs, and which changed file it
/// refused: the bookkeeping of hot reload and rollback, shared by both
/// isolations. Read from any thread (SIGHUP asks whether the file changed).
final class PluginVersions<Version: PluginFileVersion>: @unchecked Sendable {
    private struct State: @unchecked Sendable {
        /// The version that worked last (or the first one, before any start).
        var current: Version
        /// The plugin's own version string for `current`, once known.
        var name: String?
        /// A changed file that failed; not tried again until the file changes again.
        var rejected: FileIdentity?
        /// Whether the file's content was found unchanged at a check a full
        /// timestamp step after its last change: from then on its identity says enough.
        var contentVerified = false
    }

    /// How far apart two changes of a file must be for its timestamps to
    /// differ: the kernel stamps files from a coarse clock (a jiffy, up to
    /// 10 ms, on ext4), and some file systems keep whole seconds or two.
    static var timestampStep: Int64 { 2_000_000_000 }

    let file: String
    private let state: Mutex<State>

    init(file: String, current: Version, name: String?) {
        self.file = file
        state = Mutex(State(current: current, name: name))
    }

    var current: Version { state.withLock { $0.current } }

    /// The version string of `current` for log lines.
    var currentName: String { state.withLock { $0.name ?? "(no version)" } }

    /// Whether the file differs from the version in use and has not been refused already.
    var fileChanged: Bool {
        guard case .success(let identity) = FileIdentity.of(path: file) else { return false }
        return differs(identity)
    }

    /// Whether the file, now of `identity`, differs from the version in use
    /// and was not refused already. A file rewritten with as many bytes within
    /// one timestamp step of being read keeps its identity (a build writing
    /// twice in a row, a deploy script): while the version in use was read
    /// that soon after its last change, the content is compared as well.
    private func differs(_ identity: FileIdentity) -> Bool {
        let (current, rejected, verified) = state.withLock { ($0.current, $0.rejected, $0.contentVerified) }
        if identity == rejected { return false }
        if identity != current.identity { return true }
        guard !verified, let readAt = current.staged.readAt, let content = current.staged.content,
              readAt.nanoseconds - identity.changed.nanoseconds < Self.timestampStep else { return false }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        // A file that cannot be read now is left to the next check.
        guard let (bytes, reread) = try? PluginLoader.read(file: file), reread == identity else { return false }
        if ContentDigest(bytes) != content { return true }
        if now.nanoseconds - identity.changed.nanoseconds >= Self.timestampStep {
            state.withLock { if $0.current.identity == identity { $0.contentVerified = true } }
        }
        return false
    }


    /// The identity of the file when it changed and deserves a try; `nil`
    /// when it did not change, was refused already, or cannot be examined.
    func changedFile(logger: Logger) -> FileIdentity? {
        switch FileIdentity.of(path: file) {
        case .success(let identity):
            return differs(identity) ? identity : nil
        case .failure(let error):
            logger.warning("\(file): cannot be examined (\(error)); keeping version \(currentName)")
            return nil
        }
    }

    /// Makes `version`, which just worked, the one in use, and says so for
    /// `service` (its metadata, its log, its events), as ``reject(_:reason:as:for:logger:)``
    /// does for a version that did not.
    func adopt(_ version: Version, name: String?, for service: BaseService, logger: Logger) {
        let previous = state.withLock { state in
            defer { state = State(current: version, name: name, rejected: nil, contentVerified: false) }
            return state.name ?? "(no version)"
        }
        let next = name ?? "(no version)"
        service.updateMetadata {
            $0.pluginVersion = name
            $0.reloadsByResult[.ok, default: 0] += 1
        }
        logger.notice("reloaded \(file): \(previous) -> \(next)", metadata: LifecycleEvent.reload(.ok, from: previous, to: next).metadata())
        service.report(.reloaded(from: previous, to: next))
    }

    /// Records the version string of the version in use, once a worker reported it.
    func name(_ name: String?) {
        state.withLock { $0.name = name }
    }

    /// Refuses the changed file with this identity, and says so for `service`;
    /// `result` says whether any of the new version's code ran (rolled back) or not (refused).
    func reject(_ identity: FileIdentity, reason: String, as result: ReloadResult, for service: BaseService, logger: Logger) {
        let kept = state.withLock { state in
            state.rejected = identity
            return state.name ?? "(no version)"
        }
        let message = "reload of \(file) failed: \(reason); keeping version \(kept)"
        logger.error("\(message)", metadata: LifecycleEvent.reload(result, from: kept, to: nil).metadata())
        service.updateMetadata {
            $0.record(ServiceFailure(code: -1, message: message))
            $0.reloadsByResult[result, default: 0] += 1
        }
        service.report(.reloadRejected(reason: reason))
    }
}
