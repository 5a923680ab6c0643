import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Watches a plugins directory with inotify and says when it changed, once
/// the change has settled, so that a reload never sees a file half-written.
///
/// The directory is watched, never single files: an atomic save (`install`,
/// write-then-`mv`) replaces a file's inode, which a watch on the file would
/// lose. Only plugin and sidecar names count (`*.so`, `*.toml`); dot-files and
/// editors' and downloaders' temporary names (`*.tmp`, `*.part`, `*.swp`,
/// `*~`, `.#*`) are ignored. A change is reported once no event came for the
/// quiet period and two looks at the changed files, a moment apart, find the
/// same size and modification time: a linker or `cp` still writing in place
/// keeps it waiting. (The load-time scanner is the second line of defence.)
/// A lost event queue (`IN_Q_OVERFLOW`) or a directory removed or moved is
/// reported as a change too: the reload that follows rescans everything.
public final class DirectoryWatcher: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// How long no event may come before the changed files are looked at. Default 200 ms.
        public var quietPeriod: Duration = .milliseconds(200)

        public init() {}

        /// How long after the first look the second one is taken.
        var secondLook: Duration { min(quietPeriod / 4, .milliseconds(50)) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private static let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

    public let directory: String
    private let configuration: Configuration
    private let logger: Logger
    private let onChange: @Sendable (_ what: String) -> Void
    private let inotify: Int32
    /// Written once by ``stop()``: wakes the thread to end.
    private let stopPipe: (read: Int32, write: Int32)
    private let finished = Completion()
    private let stopped = Atomic<Bool>(false)
    /// The watch on the directory; -1 while the directory is gone. Only the watcher's thread changes it after start.
    private var watch: Int32
    /// The longest a change waits to settle: a file rewritten without pause
    /// is looked at after this all the same (the scanner refuses it if it is
    /// not whole), so that a busy directory cannot hold reloads off forever.
    static let longestSettle = Duration.seconds(5)

    /// Starts watching `directory`; `onChange` is called on the watcher's own
    /// thread with a short description of what changed, and must not block.
    public init(directory: String, configuration: Configuration = .init(), logger: Logger,
                onChange: @escaping @Sendable (_ what: String) -> Void) throws(Failure) {
        self.directory = directory
        self.configuration = configuration
        self.logger = logger
        self.onChange = onChange
        inotify = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard inotify >= 0 else {
            throw Failure(description: "cannot watch \(directory): inotify: \(String(cString: strerror(errno)))")
        }
        // Close-on-exec from the start: plugins already run and may fork.
        var ends: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            let reason = String(cString: strerror(errno))
            close(inotify)
            throw Failure(description: "cannot watch \(directory): \(reason)")
        }
        stopPipe = (ends[0], ends[1])
        watch = inotify_add_watch(inotify, directory, Self.mask)
        guard watch >= 0 else {
            let reason = String(cString: strerror(errno))
            close(inotify); close(ends[0]); close(ends[1])
            throw Failure(description: "cannot watch \(directory): \(reason)")
        }
        do {
            try HostThread.spawn(name: "host:watch") { [self] in
                run()
                finished.complete()
            }
        } catch {
            close(inotify); close(ends[0]); close(ends[1])
            throw Failure(description: "cannot watch \(directory): no thread: \(error)")
        }
    }

    /// Stops watching and returns once the watcher's thread has ended (at
    /// once: it waits on nothing else). Calling it again does nothing.
    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        var byte: UInt8 = 1
        _ = write(stopPipe.write, &byte, 1)
        // Bounded like every wait; a thread that has not ended may still poll
        // the descriptors, so they are then left open rather than reused under it.
        guard finished.waitBlocking(timeout: .seconds(5)) else { return }
        close(inotify)
        close(stopPipe.read)
        close(stopPipe.write)
    }

    deinit { stop() }

    /// Whether a file name in the plugins directory can matter to a reload.
    static func isRelevant(_ name: String) -> Bool {
        guard !name.hasPrefix("."), !name.hasSuffix("~") else { return false }
        for ignored in [".tmp", ".part", ".swp", ".swx", ".crdownload"] where name.hasSuffix(ignored) { return false }
        return name.hasSuffix(".so") || name.hasSuffix(".toml")
    }

    // MARK: The watcher's thread

    /// What the thread waits for.
    private enum Phase {
        /// Nothing changed.
        case idle
        /// Something changed; the last event came at `since`.
        case settling(since: ContinuousClock.Instant)
        /// Quiet long enough; first look taken at `at`.
        case looked([String: FileLook], at: ContinuousClock.Instant)
    }

    /// A file's size and modification time, or `nil` when it is gone.
    private struct FileLook: Equatable {
        let size: Int64
        let modified: timespec

        static func == (lhs: FileLook, rhs: FileLook) -> Bool {
            lhs.size == rhs.size && lhs.modified.tv_sec == rhs.modified.tv_sec && lhs.modified.tv_nsec == rhs.modified.tv_nsec
        }
    }

    private func run() {
        var phase = Phase.idle
        var changed: Set<String> = []
        var rescan: String?
        /// When the change now settling began, for ``longestSettle``.
        var firstEvent: ContinuousClock.Instant?
        while true {
            let now = ContinuousClock.now
            var wakeAt: ContinuousClock.Instant? = switch phase {
            case .idle: nil
            case .settling(let since): since + configuration.quietPeriod
            case .looked(_, let at): at + configuration.secondLook
            }
            if let first = firstEvent, let planned = wakeAt { wakeAt = min(planned, first + Self.longestSettle) }
            // While the directory is gone, look for it again every quiet period.
            if watch < 0 { wakeAt = min(wakeAt ?? now + configuration.quietPeriod, now + configuration.quietPeriod) }
            var descriptors = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0)]
            let timeout: Int32 = wakeAt.map { Int32(clamping: max(0, ($0 - now).milliseconds) + 1) } ?? -1
            let ready = poll(&descriptors, 2, timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("watching \(directory) failed: poll: \(String(cString: strerror(errno))); --watch stops")
                return
            }
            if descriptors[1].revents != 0 { return }
            if descriptors[0].revents != 0 {
                let events = readEvents()
                for event in events {
                    if event.mask & UInt32(IN_Q_OVERFLOW) != 0 {
                        rescan = "too many changes at once (the event queue overflowed)"
                    } else if event.mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF) != 0, watch >= 0 {
                        rescan = "the plugins directory itself was removed or moved"
                        // A moved directory keeps its watch under its new name: drop it.
                        inotify_rm_watch(inotify, watch)
                        watch = -1
                        logger.error("\(directory) was removed or moved; --watch looks for it again every \(configuration.quietPeriod)")
                    } else if Self.isRelevant(event.name) {
                        changed.insert(event.name)
                    }
                }
                if rescan != nil || !changed.isEmpty {
                    firstEvent = firstEvent ?? .now
                    phase = .settling(since: .now)
                }
                continue
            }
            if watch < 0 {
                watch = inotify_add_watch(inotify, directory, Self.mask)
                if watch >= 0 {
                    logger.notice("\(directory) is back; watching it again")
                    rescan = "the plugins directory came back"
                    firstEvent = firstEvent ?? .now
                    phase = .settling(since: .now)
                }
            }
            // A timeout: the quiet period, the moment for the second look, or the longest wait has come.
            let overdue = firstEvent.map { ContinuousClock.now >= $0 + Self.longestSettle } ?? false
            switch phase {
            case .idle:
                continue
            case .settling where !overdue:
                phase = .looked(looks(at: changed), at: .now)
            case .settling, .looked:
                if case .looked(let first, _) = phase, !overdue {
                    let second = looks(at: changed)
                    guard second == first else {
                        // Still being written: wait for it to settle again.
                        phase = .looked(second, at: .now)
                        continue
                    }
                }
                let what = rescan ?? changed.sorted().joined(separator: ", ")
                changed.removeAll()
                rescan = nil
                firstEvent = nil
                phase = .idle
                onChange(what)
            }
        }
    }

    private struct Event {
        let mask: UInt32
        let name: String
    }

    /// Reads every queued event; the buffer holds many, and the kernel never splits one.
    private func readEvents() -> [Event] {
        var events: [Event] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = read(inotify, &buffer, buffer.count)
            guard count > 0 else { return events }
            buffer.withUnsafeBytes { bytes in
                var offset = 0
                let header = MemoryLayout<inotify_event>.size
                while offset + header <= count {
                    let mask = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                    let length = Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                    guard offset + header + length <= count else { break }
                    let nameBytes = bytes[(offset + header)..<(offset + header + length)].prefix { $0 != 0 }
                    events.append(Event(mask: mask, name: String(decoding: nameBytes, as: UTF8.self)))
                    offset += header + length
                }
            }
        }
    }

    private func looks(at names: Set<String>) -> [String: FileLook] {
        var looks: [String: FileLook] = [:]
        for name in names {
            var info = stat()
            if lstat("\(directory)/\(name)", &info) == 0 {
                looks[name] = FileLook(size: Int64(info.st_size), modified: info.st_mtim)
            }
        }
        return looks
    }
}
