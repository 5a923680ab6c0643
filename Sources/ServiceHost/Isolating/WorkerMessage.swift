/// Everything the host's processes say to each other, one message per
/// datagram of a `SOCK_SEQPACKET` socket (larger ones in fragments, see
/// ``WorkerChannel``): the host and a worker, the host and a load-time scan,
/// the host and the fork server. One codec for all three, so that each is
/// bounded, versioned by tag and decoded the same defensive way.
enum WorkerMessage: Sendable, Equatable {
    // Host to worker.
    /// Load the staged copy and run the service.
    case start(WorkerAssignment)
    /// The scheduler ordered the service to stop.
    case stop
    /// Sent right after `.start`: what the service kept (`state_load`), its
    /// bytes in a sealed memfd passed with this message (none when 0).
    case keptState(size: UInt64)
    /// Sent after `.start`, before `.keptState`, once per kept descriptor
    /// (`fd_load`): the descriptor, passed with this message, and its name.
    case keptDescriptor(name: String)

    // Worker to host.
    /// The plugin loaded; its version.
    case loaded(version: String?)
    /// The plugin could not be loaded.
    case loadFailed(code: String, reason: String)
    /// `svc_create` succeeded.
    case created
    /// The plugin kept these bytes (`state_save`): a sealed memfd passed
    /// with this message holds them (none when 0: keep nothing).
    case stateSaved(size: UInt64)
    /// The plugin kept a descriptor under `name` (`fd_keep`), passed with
    /// this message; or forgot `name` when `present` is false.
    case descriptorKept(name: String, present: Bool)
    /// The worker refused an `fd_keep` (the run's first refusal): the host
    /// logs why. `name` is as the plugin gave it, cut at 256 bytes.
    case keepRefused(name: String, code: Int32)
    /// `svc_create` returned a negative code.
    case createFailed(code: Int32)
    /// A line the plugin logged.
    case log(level: Int32, message: String)
    /// A call overran its limit; the worker kills itself right after saying so.
    case hung(call: UInt8, elapsedNanoseconds: Int64)
    /// The run ended (after `svc_stop`); the worker exits right after.
    case stopped(WorkerStopReport)
    /// The worker process still runs (sent every half watchdog period by a
    /// thread of its own): a stopped or frozen worker falls silent. Carries
    /// the loop turns of the run so far, for metrics.
    case alive(loops: UInt64)

    // Host to a scan process (see ``ScanProcess``), which answers `.loading`,
    // then `.loaded` or `.loadFailed`, as a worker does.
    /// Load this private copy and say how it went.
    case scan(privateCopy: String)
    /// A scan or worker starts loading now: `start_timeout_ms` counts from here.
    case loading

    // Host to fork server; the socket to use travels with the spawn requests (`SCM_RIGHTS`).
    /// Fork a worker on the socket passed with this message.
    case spawnWorker
    /// Fork a scan process on the socket passed with this message.
    case spawnScan
    /// Collect the exit status of this child, which has exited or been killed.
    case reap(pid: Int32)
    /// The host is done with this worker (it read its exit status on the
    /// worker's socket): reap it once it is dead. Not answered.
    case release(pid: Int32)

    // Fork server to host.
    /// The child forked for the last spawn request (-1: fork failed).
    case spawned(pid: Int32)
    /// The child's exit status; also the fork server's last word on a
    /// worker's own socket, once the worker has died (see ``ForkServer``).
    case reaped(ExitStatus)
}

/// The service a worker is to run.
struct WorkerAssignment: Sendable, Equatable {
    var name: String
    var file: String
    var privateCopy: String
    var containsSwiftCode: Bool
    var interval: Duration
    var watchdog: Duration?
    var startTimeout: Duration?
    var settings: [String: String]
}

/// How a worker's run ended, as ``StopReason`` without the start cases.
struct WorkerStopReport: Sendable, Equatable {
    enum Kind: UInt8, Sendable {
        case ordered, requested, finished, failed
    }

    var kind: Kind
    var code: Int32 = 0
    var message: String = ""
    /// Loop turns in the run.
    var loops: UInt64 = 0

    init(kind: Kind, code: Int32 = 0, message: String = "", loops: UInt64 = 0) {
        self.kind = kind
        self.code = code
        self.message = message
        self.loops = loops
    }

    init(_ reason: StopReason) {
        switch reason {
        case .ordered: self.init(kind: .ordered)
        case .requested: self.init(kind: .requested)
        case .finished: self.init(kind: .finished)
        case .failed(let failure), .startFailed(let failure):
            self.init(kind: .failed, code: failure.code, message: failure.message)
        }
    }
}

// MARK: Encoding

extension WorkerMessage {
    /// The longest log line a worker sends (``Limits/maxLogLine``); longer
    /// ones are cut, so that a log message always fits one datagram.
    static let logLimit = Limits.maxLogLine

    /// The largest encoded message either side sends or accepts (``Limits/maxWorkerMessage``).
    static let maxSize = Limits.maxWorkerMessage

    private enum Tag: UInt8 {
        case start = 1, stop, loaded = 4, loadFailed, created, createFailed, log, hung, stopped, alive
        case scan, loading, spawnWorker, spawnScan, reap, spawned, reaped, release
        case keptState, stateSaved, keptDescriptor, descriptorKept, keepRefused
    }

    func encoded() -> [UInt8] {
        var out = MessageWriter()
        switch self {
        case .start(let assignment):
            out.byte(Tag.start.rawValue)
            out.string(assignment.name)
            out.string(assignment.file)
            out.string(assignment.privateCopy)
            out.byte(assignment.containsSwiftCode ? 1 : 0)
            out.duration(assignment.interval)
            out.duration(assignment.watchdog ?? .zero)
            out.duration(assignment.startTimeout ?? .zero)
            out.int64(Int64(assignment.settings.count))
            for (key, value) in assignment.settings.sorted(by: { $0.key < $1.key }) {
                out.string(key)
                out.string(value)
            }
        case .stop:
            out.byte(Tag.stop.rawValue)
        case .keptState(let size):
            out.byte(Tag.keptState.rawValue)
            out.int64(Int64(bitPattern: size))
        case .stateSaved(let size):
            out.byte(Tag.stateSaved.rawValue)
            out.int64(Int64(bitPattern: size))
        case .keptDescriptor(let name):
            out.byte(Tag.keptDescriptor.rawValue)
            out.string(name)
        case .descriptorKept(let name, let present):
            out.byte(Tag.descriptorKept.rawValue)
            out.string(name)
            out.byte(present ? 1 : 0)
        case .keepRefused(let name, let code):
            out.byte(Tag.keepRefused.rawValue)
            out.string(String(decoding: name.utf8.prefix(256), as: UTF8.self))
            out.int64(Int64(code))
        case .loaded(let version):
            out.byte(Tag.loaded.rawValue)
            out.byte(version == nil ? 0 : 1)
            out.string(version ?? "")
        case .loadFailed(let code, let reason):
            out.byte(Tag.loadFailed.rawValue)
            out.string(code)
            out.string(reason)
        case .created:
            out.byte(Tag.created.rawValue)
        case .createFailed(let code):
            out.byte(Tag.createFailed.rawValue)
            out.int64(Int64(code))
        case .log(let level, let message):
            out.byte(Tag.log.rawValue)
            out.int64(Int64(level))
            out.string(String(decoding: message.utf8.prefix(Self.logLimit), as: UTF8.self))
        case .hung(let call, let elapsed):
            out.byte(Tag.hung.rawValue)
            out.byte(call)
            out.int64(elapsed)
        case .alive(let loops):
            out.byte(Tag.alive.rawValue)
            out.int64(Int64(bitPattern: loops))
        case .stopped(let report):
            out.byte(Tag.stopped.rawValue)
            out.byte(report.kind.rawValue)
            out.int64(Int64(report.code))
            out.string(report.message)
            out.int64(Int64(bitPattern: report.loops))
        case .scan(let privateCopy):
            out.byte(Tag.scan.rawValue)
            out.string(privateCopy)
        case .loading:
            out.byte(Tag.loading.rawValue)
        case .spawnWorker:
            out.byte(Tag.spawnWorker.rawValue)
        case .spawnScan:
            out.byte(Tag.spawnScan.rawValue)
        case .reap(let pid):
            out.byte(Tag.reap.rawValue)
            out.int64(Int64(pid))
        case .release(let pid):
            out.byte(Tag.release.rawValue)
            out.int64(Int64(pid))
        case .spawned(let pid):
            out.byte(Tag.spawned.rawValue)
            out.int64(Int64(pid))
        case .reaped(let status):
            out.byte(Tag.reaped.rawValue)
            switch status.ending {
            case .exited(let code): out.byte(0); out.int64(Int64(code))
            case .killed(let signal): out.byte(1); out.int64(Int64(signal))
            // Known only to the host: the fork server never reports these.
            case .unknown, .closedItsConnection, .killedWithForkServer, .survivedKill: out.byte(2); out.int64(0)
            }
        }
        return out.bytes
    }

    /// Decodes one datagram; `nil` for anything malformed.
    init?(decoding bytes: UnsafeRawBufferPointer) {
        var input = MessageReader(bytes)
        guard let raw = input.byte(), let tag = Tag(rawValue: raw) else { return nil }
        switch tag {
        case .start:
            guard let name = input.string(), let file = input.string(), let copy = input.string(),
                  let swift = input.byte(), let interval = input.duration(), let watchdog = input.duration(),
                  let startTimeout = input.duration(), let count = input.int64(), count >= 0 else { return nil }
            var settings: [String: String] = [:]
            for _ in 0..<count {
                guard let key = input.string(), let value = input.string() else { return nil }
                settings[key] = value
            }
            self = .start(WorkerAssignment(
                name: name, file: file, privateCopy: copy, containsSwiftCode: swift != 0, interval: interval,
                watchdog: watchdog == .zero ? nil : watchdog, startTimeout: startTimeout == .zero ? nil : startTimeout,
                settings: settings))
        case .stop:
            self = .stop
        case .keptState:
            guard let size = input.int64(), size >= 0, size <= Limits.maxKeptState else { return nil }
            self = .keptState(size: UInt64(size))
        case .stateSaved:
            guard let size = input.int64(), size >= 0, size <= Limits.maxKeptState else { return nil }
            self = .stateSaved(size: UInt64(size))
        case .keptDescriptor:
            guard let name = input.string(), KeptState.isValidName(name) else { return nil }
            self = .keptDescriptor(name: name)
        case .descriptorKept:
            guard let name = input.string(), KeptState.isValidName(name), let present = input.byte(), present <= 1 else { return nil }
            self = .descriptorKept(name: name, present: present == 1)
        case .keepRefused:
            guard let name = input.string(), name.utf8.count <= 260, let code = input.int64(),
                  let code32 = Int32(exactly: code) else { return nil }
            self = .keepRefused(name: name, code: code32)
        case .loaded:
            guard let has = input.byte(), let version = input.string() else { return nil }
            self = .loaded(version: has == 0 ? nil : version)
        case .loadFailed:
            guard let code = input.string(), let reason = input.string() else { return nil }
            self = .loadFailed(code: code, reason: reason)
        case .created:
            self = .created
        case .createFailed:
            guard let code = input.int64() else { return nil }
            self = .createFailed(code: Int32(truncatingIfNeeded: code))
        case .log:
            guard let level = input.int64(), let message = input.string() else { return nil }
            self = .log(level: Int32(truncatingIfNeeded: level), message: message)
        case .hung:
            guard let call = input.byte(), let elapsed = input.int64() else { return nil }
            self = .hung(call: call, elapsedNanoseconds: elapsed)
        case .alive:
            guard let loops = input.int64() else { return nil }
            self = .alive(loops: UInt64(bitPattern: loops))
        case .stopped:
            guard let raw = input.byte(), let kind = WorkerStopReport.Kind(rawValue: raw),
                  let code = input.int64(), let message = input.string(), let loops = input.int64() else { return nil }
            self = .stopped(WorkerStopReport(kind: kind, code: Int32(truncatingIfNeeded: code), message: message,
                                             loops: UInt64(bitPattern: loops)))
        case .scan:
            guard let privateCopy = input.string() else { return nil }
            self = .scan(privateCopy: privateCopy)
        case .loading:
            self = .loading
        case .spawnWorker:
            self = .spawnWorker
        case .spawnScan:
            self = .spawnScan
        case .reap:
            guard let pid = input.int64().flatMap(Int32.init(exactly:)), pid > 0 else { return nil }
            self = .reap(pid: pid)
        case .release:
            guard let pid = input.int64().flatMap(Int32.init(exactly:)), pid > 0 else { return nil }
            self = .release(pid: pid)
        case .spawned:
            guard let pid = input.int64().flatMap(Int32.init(exactly:)) else { return nil }
            self = .spawned(pid: pid)
        case .reaped:
            guard let kind = input.byte(), let value = input.int64().flatMap(Int32.init(exactly:)) else { return nil }
            switch kind {
            case 0: self = .reaped(ExitStatus(.exited(value)))
            case 1: self = .reaped(ExitStatus(.killed(value)))
            case 2: self = .reaped(ExitStatus(.unknown))
            default: return nil
            }
        }
    }
}

private struct MessageWriter {
    var bytes: [UInt8] = []

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    mutating func int64(_ value: Int64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func duration(_ value: Duration) {
        int64(value.nanoseconds)
    }

    mutating func string(_ value: String) {
        int64(Int64(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }
}

private struct MessageReader {
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func byte() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func int64() -> Int64? {
        guard bytes.count - offset >= 8 else { return nil }
        defer { offset += 8 }
        return Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self))
    }

    mutating func duration() -> Duration? {
        int64().map { .nanoseconds($0) }
    }

    mutating func string() -> String? {
        guard let count = int64(), count >= 0, count <= bytes.count - offset else { return nil }
        defer { offset += Int(count) }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(count)]), as: UTF8.self)
    }
}
