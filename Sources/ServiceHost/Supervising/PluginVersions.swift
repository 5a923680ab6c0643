import Logging
import Synchronization

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
    }

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
        return state.withLock { identity != $0.current.identity && identity != $0.rejected }
    }

    /// The identity of the file when it changed and deserves a try; `nil`
    /// when it did not change, was refused already, or cannot be examined.
    func changedFile(logger: Logger) -> FileIdentity? {
        switch FileIdentity.of(path: file) {
        case .success(let identity):
            return state.withLock { identity != $0.current.identity && identity != $0.rejected } ? identity : nil
        case .failure(let error):
            logger.warning("\(file): cannot be examined (\(error)); keeping version \(currentName)")
            return nil
        }
    }

    /// Makes `version`, which just worked, the one in use; returns the name of the one it replaces.
    @discardableResult
    func adopt(_ version: Version, name: String?) -> String {
        state.withLock { state in
            defer { state = State(current: version, name: name, rejected: nil) }
            return state.name ?? "(no version)"
        }
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
