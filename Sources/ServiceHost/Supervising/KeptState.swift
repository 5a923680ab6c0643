import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a service keeps across its runs (`svc_host.state_save`, `fd_keep`):
/// a byte string and named descriptors, which restarts, recoveries and reloads
/// to another version read back (`state_load`, `fd_load`).
///
/// Every run has a ``Run`` token. What a run reads is the snapshot taken
/// when it began, so its own saves never move memory it may still be
/// reading. Only the newest run's saves are taken, and, while an overlapping
/// reload creates its successor, the old run's into a copy of their own
/// (kept if the successor fails, dropped once it takes over): what the new
/// version read is never overwritten behind it, and a thread a plugin left
/// behind after `svc_stop` cannot write either. A run whose `svc_create`
/// failed is abandoned: what it saved is dropped, so a refused version's
/// state or descriptors never reach the version that keeps running.
///
/// Bytes are copied with `malloc` and descriptors duplicated with
/// `F_DUPFD_CLOEXEC`, so that a host out of memory or descriptors refuses
/// one save instead of trapping. Kept descriptors are closed when nothing
/// refers to them any more: replaced, forgotten, or the service removed.
final class KeptState: Sendable {
    /// The kept bytes: a `malloc`ed copy (thread isolation), or a worker's
    /// sealed memfd mapped read-only (process isolation: kept as it came,
    /// and passed on to the next worker as it is, never copied). Freed, or
    /// unmapped and closed, with its owner.
    fileprivate final class Bytes: @unchecked Sendable {
        let buffer: UnsafeRawBufferPointer
        /// The sealed memfd the bytes are mapped from, if they are.
        let sealed: Int32?

        init?(copying source: UnsafeRawBufferPointer) {
            guard let memory = malloc(max(1, source.count)) else { return nil }
            if let base = source.baseAddress, source.count > 0 { memory.copyMemory(from: base, byteCount: source.count) }
            buffer = UnsafeRawBufferPointer(start: memory, count: source.count)
            sealed = nil
        }

        /// Adopts `descriptor` (a memfd sealed against writing, growing and
        /// shrinking) and `mapping`, its whole content mapped read-only.
        init(sealed descriptor: Int32, mapping: UnsafeRawBufferPointer) {
            buffer = mapping
            sealed = descriptor
        }

        deinit {
            if let sealed {
                munmap(UnsafeMutableRawPointer(mutating: buffer.baseAddress), buffer.count)
                close(sealed)
            } else {
                free(UnsafeMutableRawPointer(mutating: buffer.baseAddress))
            }
        }
    }

    /// A descriptor the host holds for a service; closed with its last owner.
    fileprivate final class Descriptor: Sendable {
        let number: Int32

        init(adopting number: Int32) { self.number = number }

        deinit { close(number) }
    }

    /// What is kept at one moment.
    fileprivate struct Contents {
        var bytes: Bytes?
        var descriptors: [String: Descriptor] = [:]
    }

    /// The codes of the keeps one run had refused, so that each is logged once.
    final class Refusals: Sendable {
        private let seen = Mutex<Set<Int32>>([])

        /// Whether `code` is refused for the first time.
        func isFirst(_ code: Int32) -> Bool {
            seen.withLock { $0.insert(code).inserted }
        }
    }

    /// One run of the service: what it read when it began.
    final class Run: Sendable {
        fileprivate let generation: UInt64
        fileprivate let read: Contents
        private let refusals = Refusals()

        /// Whether a keep refused with `code` is the run's first refused so,
        /// which is logged (a plugin that keeps in a loop would fill the log otherwise).
        func logsRefusal(_ code: Int32) -> Bool { refusals.isFirst(code) }

        fileprivate init(generation: UInt64, read: Contents) {
            self.generation = generation
            self.read = read
        }

        /// `state_load`: the bytes kept when this run began; valid as long as the run.
        var state: UnsafeRawBufferPointer? { read.bytes.map(\.buffer) }

        /// The sealed memfd the bytes kept when this run began are mapped
        /// from, if a worker saved them: a worker of this run gets the same
        /// one. Valid as long as the run.
        var sealedState: Int32? { read.bytes?.sealed }

        /// The names of the descriptors kept when this run began.
        var descriptorNames: [String] { read.descriptors.keys.sorted() }

        /// A descriptor kept under `name` when this run began, without a
        /// copy: valid as long as the run (for passing on to a worker).
        func keptDescriptor(named name: String) -> Int32? { read.descriptors[name]?.number }

        /// `fd_load`: a duplicate (close-on-exec) of what was kept under
        /// `name` when this run began, the caller's to close; or a negative
        /// error number: `-ENOENT` for none, `-EMFILE` when no descriptor is left.
        func loadDescriptor(named name: String) -> Int32 {
            guard let kept = read.descriptors[name] else { return -ENOENT }
            let copy = fcntl(kept.number, F_DUPFD_CLOEXEC, 0)
            return copy >= 0 ? copy : -errno
        }
    }

    private struct State {
        var kept = Contents()
        /// The run whose saves are taken, if one is under way.
        var taking: UInt64?
        var lastGeneration: UInt64 = 0
        /// The run an overlapping reload's new run succeeds, while the new
        /// one is being created: its saves go to a copy of its own, which
        /// becomes what is kept again if the new run fails (``abandonRun(_:)``)
        /// and is dropped once the new one takes over (``retire(_:)``).
        var predecessor: Predecessor?
    }

    private struct Predecessor {
        let generation: UInt64
        /// Whether it still runs (its saves are taken).
        var running = true
        var kept: Contents
    }

    private let state = Mutex(State())

    /// The most bytes kept (`SVC_STATE_MAX_SIZE`).
    static let maxSize = Limits.maxKeptState
    /// The most descriptors a service keeps (`SVC_FD_MAX_KEPT`).
    static let maxDescriptors = Limits.maxKeptDescriptors
    /// The longest descriptor name (`SVC_FD_NAME_MAX`).
    static let maxNameLength = 64

    /// Changes what `run` keeps: the kept contents if it is the newest run,
    /// its own copy if it is a predecessor still running; `-ESTALE` otherwise.
    private func update(by run: Run, _ change: (inout Contents) -> Int32) -> Int32 {
        state.withLock { state in
            if state.taking == run.generation { return change(&state.kept) }
            guard var predecessor = state.predecessor, predecessor.running, predecessor.generation == run.generation else {
                return -ESTALE
            }
            let code = change(&predecessor.kept)
            state.predecessor = predecessor
            return code
        }
    }

    private func mayKeep(_ run: Run) -> Bool {
        update(by: run) { _ in 0 } == 0
    }

    /// Whether `contents` has room for a descriptor under `name`.
    private static func hasRoom(for name: String, in contents: Contents) -> Bool {
        contents.descriptors[name] != nil || contents.descriptors.count < maxDescriptors
    }

    /// `state_save` by `run`: keeps a copy of `bytes`; 0 or a negative error
    /// number (`-ESTALE` once the run ended or a successor took over).
    func save(_ bytes: UnsafeRawPointer?, count: Int, by run: Run) -> Int32 {
        guard count >= 0, bytes != nil || count == 0 else { return -EINVAL }
        guard count <= Self.maxSize else { return -E2BIG }
        guard mayKeep(run) else { return -ESTALE }
        // Copied outside the lock: a 16 MiB copy must not hold up a reader.
        var copy: Bytes?
        if count > 0 {
            guard let made = Bytes(copying: UnsafeRawBufferPointer(start: bytes, count: count)) else { return -ENOMEM }
            copy = made
        }
        return update(by: run) { contents in
            contents.bytes = copy
            return 0
        }
    }

    /// `state_save` in a worker of `run`: keeps the sealed memfd the bytes
    /// came in (already checked, and mapped read-only as `mapping`), which
    /// is closed and unmapped here if refused.
    func save(sealed descriptor: Int32, mapping: UnsafeRawBufferPointer, by run: Run) -> Int32 {
        let bytes = Bytes(sealed: descriptor, mapping: mapping)
        return update(by: run) { contents in
            contents.bytes = bytes
            return 0
        }
    }

    /// Whether `name` may name a kept descriptor: 1 to 64 bytes of letters,
    /// digits, `.`, `_` and `-` (it appears in logs and `ctl status`).
    static func isValidName(_ name: String) -> Bool {
        let bytes = name.utf8
        return (1...maxNameLength).contains(bytes.count) && bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"): true
            default: false
            }
        }
    }

    /// `fd_keep` by `run`: keeps a duplicate of `descriptor` under `name`,
    /// or forgets `name` when `descriptor` is -1. 0 or a negative error number.
    func keep(_ descriptor: Int32, named name: String, by run: Run) -> Int32 {
        guard Self.isValidName(name) else { return -EINVAL }
        guard descriptor >= -1 else { return -EBADF }
        guard descriptor >= 0 else { return keep(nil, named: name, by: run) }
        // Checked before duplicating, so that a refused keep costs no descriptor.
        let admitted = update(by: run) { Self.hasRoom(for: name, in: $0) ? 0 : -ENOSPC }
        guard admitted == 0 else { return admitted }
        let copy = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { return -errno }
        return keep(Descriptor(adopting: copy), named: name, by: run)
    }

    /// Keeps `descriptor` (now owned here; closed if refused) under `name`:
    /// one a worker passed with `SCM_RIGHTS`, already a copy.
    func keep(adopting descriptor: Int32, named name: String, by run: Run) -> Int32 {
        let owned = Descriptor(adopting: descriptor)
        guard Self.isValidName(name) else { return -EINVAL }
        return keep(owned, named: name, by: run)
    }

    private func keep(_ descriptor: Descriptor?, named name: String, by run: Run) -> Int32 {
        update(by: run) { contents in
            guard let descriptor else {
                contents.descriptors[name] = nil
                return 0
            }
            guard Self.hasRoom(for: name, in: contents) else { return -ENOSPC }
            contents.descriptors[name] = descriptor
            return 0
        }
    }

    /// Begins a run: it reads what is kept now, and from now on only its
    /// saves are taken.
    func beginRun() -> Run {
        state.withLock { state in
            state.lastGeneration += 1
            state.taking = state.lastGeneration
            state.predecessor = nil
            return Run(generation: state.lastGeneration, read: state.kept)
        }
    }

    /// Begins a run that is to take over from `old`, which runs on meanwhile
    /// (an overlapping reload): the new run reads what `old` kept so far;
    /// `old`'s further saves are kept aside until the new run takes over
    /// (``retire(_:)``, which drops them) or fails (``abandonRun(_:)``, which
    /// keeps them). `nil` when `old` is not the newest run any more (it
    /// ended, or the service was restarted meanwhile).
    func beginRun(succeeding old: Run) -> Run? {
        state.withLock { state in
            guard state.taking == old.generation else { return nil }
            state.predecessor = Predecessor(generation: old.generation, kept: state.kept)
            state.lastGeneration += 1
            state.taking = state.lastGeneration
            return Run(generation: state.lastGeneration, read: state.kept)
        }
    }

    /// The run `old` was succeeded: the new run took over, and `old`'s saves
    /// from now on are refused (`-ESTALE`).
    func retire(_ old: Run) {
        state.withLock { state in
            if state.predecessor?.generation == old.generation { state.predecessor = nil }
        }
    }

    /// Stops taking `run`'s saves: its `svc_stop` returned, or its worker ended.
    func endRun(_ run: Run) {
        state.withLock { state in
            if state.taking == run.generation { state.taking = nil }
            if state.predecessor?.generation == run.generation { state.predecessor?.running = false }
        }
    }

    /// Ends a run whose `svc_create` failed: what it kept is dropped. What
    /// is kept again is what it read, or, if it was to succeed a run that
    /// runs on (an overlapping reload), what that run kept meanwhile, whose
    /// saves are taken again.
    func abandonRun(_ run: Run) {
        state.withLock { state in
            // Ended already (its worker's end was seen first) is fine; a newer run is not undone.
            guard state.lastGeneration == run.generation else { return }
            if let predecessor = state.predecessor {
                state.kept = predecessor.kept
                state.taking = predecessor.running ? predecessor.generation : nil
                state.predecessor = nil
            } else {
                state.kept = run.read
                state.taking = nil
            }
        }
    }

    /// How many bytes are kept now.
    var keptCount: Int {
        state.withLock { $0.kept.bytes?.buffer.count ?? 0 }
    }

    /// The names of the descriptors kept now, sorted.
    var descriptorNames: [String] {
        state.withLock { $0.kept.descriptors.keys.sorted() }
    }

    /// Why `fd_keep` refused a descriptor, for the service's log.
    static func refusal(of name: String, code: Int32) -> String {
        switch -code {
        case ENOSPC:
            "fd_keep(\"\(name)\") refused: the service keeps \(maxDescriptors) descriptors already, the most one may (SVC_FD_MAX_KEPT); forget one (fd_keep(name, -1)) first"
        case EINVAL:
            "fd_keep refused a descriptor: its name must be 1 to \(maxNameLength) letters, digits, '.', '_' or '-' and the descriptor open (or -1 to forget)"
        case ESTALE:
            "fd_keep(\"\(name)\") refused: this run has ended or been replaced by a newer one"
        default:
            "fd_keep(\"\(name)\") refused: \(Errno(-code))"
        }
    }
}
