import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The byte string a service keeps across its runs (`svc_host.state_save`
/// and `state_load`): restarts, recoveries and reloads to another version
/// read what the run before saved.
///
/// The copy is made with `malloc`, so that a host out of memory refuses one
/// save (`-ENOMEM`) instead of trapping. What a run reads is a snapshot taken
/// when it began (``beginRun()``): the run's own saves never move memory it
/// may still be reading. Saves are taken only while a run is under way, so a
/// thread a plugin left behind after `svc_stop` cannot overwrite what the
/// next run will read.
final class KeptState: Sendable {
    /// A `malloc`ed copy, freed with its owner.
    fileprivate final class Bytes: @unchecked Sendable {
        let buffer: UnsafeMutableRawBufferPointer

        init?(copying source: UnsafeRawBufferPointer) {
            guard let memory = malloc(max(1, source.count)) else { return nil }
            buffer = UnsafeMutableRawBufferPointer(start: memory, count: source.count)
            if let base = source.baseAddress, source.count > 0 { buffer.baseAddress!.copyMemory(from: base, byteCount: source.count) }
        }

        deinit { free(buffer.baseAddress) }
    }

    private struct State {
        /// What a save last kept.
        var kept: Bytes?
        /// What the current run read at its start; kept alive until the next run begins.
        var read: Bytes?
        var running = false
    }

    private let state = Mutex(State())

    /// The most bytes kept (`SVC_STATE_MAX_SIZE`).
    static let maxSize = Limits.maxKeptState

    /// `state_save`: keeps a copy of `bytes`; 0 or a negative error number.
    func save(_ bytes: UnsafeRawPointer?, count: Int) -> Int32 {
        guard count >= 0, bytes != nil || count == 0 else { return -EINVAL }
        guard count <= Self.maxSize else { return -E2BIG }
        guard state.withLock({ $0.running }) else { return -EPERM }
        // Copied outside the lock: a 16 MiB copy must not hold up a reader.
        var copy: Bytes?
        if count > 0 {
            guard let made = Bytes(copying: UnsafeRawBufferPointer(start: bytes, count: count)) else { return -ENOMEM }
            copy = made
        }
        return state.withLock { state in
            guard state.running else { return -EPERM }
            state.kept = copy
            return 0
        }
    }

    /// Takes the snapshot the run about to begin reads, and starts taking
    /// saves. Returns what was kept, to put back if the run's `svc_create` fails.
    @discardableResult
    func beginRun() -> Snapshot {
        state.withLock { state in
            state.read = state.kept
            state.running = true
            return Snapshot(bytes: state.kept)
        }
    }

    /// Stops taking saves: the run's `svc_stop` returned, or its `svc_create` failed.
    func endRun() {
        state.withLock { $0.running = false }
    }

    /// Puts back what was kept when a run began whose `svc_create` failed:
    /// what it saved meanwhile (perhaps in a newer format) is dropped.
    func restore(_ snapshot: Snapshot) {
        state.withLock { $0.kept = snapshot.bytes }
    }

    /// Ends a run whose `svc_create` failed, dropping what it saved (``restore(_:)``).
    func abandonRun(restoring snapshot: Snapshot) {
        state.withLock { state in
            state.running = false
            state.kept = snapshot.bytes
        }
    }

    /// `state_load`: what the current run read at its start; valid until the next ``beginRun()``.
    var readByCurrentRun: UnsafeRawBufferPointer? {
        state.withLock { state in state.read.map { UnsafeRawBufferPointer($0.buffer) } }
    }

    /// How many bytes are kept now.
    var keptCount: Int {
        state.withLock { $0.kept?.buffer.count ?? 0 }
    }

    /// What was kept at one moment, opaque to everyone but ``KeptState``.
    struct Snapshot: @unchecked Sendable {
        fileprivate let bytes: Bytes?
    }
}
