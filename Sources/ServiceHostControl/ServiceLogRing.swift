import DequeModule
import Foundation
import Logging
import Synchronization

/// The most recent log lines of each service, kept in memory so that an
/// operator can read them (`servicehost ctl logs NAME`) without a log file.
///
/// Bounded per service, in lines and in bytes, so that a service that logs
/// without pause, or a thousand services, cannot grow the host: with the
/// defaults a service keeps at most 64 KiB of text. A line longer than
/// ``Limits/maxLineBytes`` is cut and marked.
public final class ServiceLogRing: Sendable {
    /// One log line, as the control API serves it.
    public struct Line: Sendable, Equatable, Codable {
        public var time: Date
        public var level: String
        public var message: String
        /// Counts every line the host kept for the service, so a reader that
        /// follows can ask for what came after the last one it saw.
        public var sequence: UInt64
    }

    /// Bounds on what is kept.
    public struct Limits: Sendable {
        /// Lines kept per service. Default 500.
        public var linesPerService: Int = 500
        /// Bytes of text kept per service. Default 64 KiB.
        public var bytesPerService: Int = 64 * 1024
        /// The longest line kept whole; longer ones are cut and end in "… (cut)". Default 2 KiB.
        public var maxLineBytes: Int = 2 * 1024
        /// Services whose lines are kept; past it, the one that logged least
        /// recently is forgotten (a removed service, with name churn). Default 4,096.
        public var services: Int = 4096

        public init() {}
    }

    private struct Ring {
        var lines: Deque<Line> = []
        var bytes = 0
        /// The sequence number of its last line: how recently it logged.
        var latest: UInt64 = 0
    }

    private struct State {
        var rings: [String: Ring] = [:]
        var nextSequence: UInt64 = 1
        /// Woken when a line arrives: readers that follow.
        var followers: [UInt64: (String, AsyncStream<Line>.Continuation)] = [:]
        var nextFollower: UInt64 = 0
    }

    public let limits: Limits
    private let state = Mutex(State())

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Keeps a line of `service`'s.
    public func append(service: String, level: Logger.Level, message: String, time: Date = Date()) {
        var text = message
        if text.utf8.count > limits.maxLineBytes {
            text = String(decoding: text.utf8.prefix(limits.maxLineBytes), as: UTF8.self) + "… (cut)"
        }
        let (line, followers) = state.withLock { state in
            let line = Line(time: time, level: level.rawValue, message: text, sequence: state.nextSequence)
            state.nextSequence += 1
            if state.rings[service] == nil, state.rings.count >= limits.services,
               let stalest = state.rings.min(by: { $0.value.latest < $1.value.latest })?.key {
                state.rings[stalest] = nil
            }
            var ring = state.rings.removeValue(forKey: service) ?? Ring()
            ring.lines.append(line)
            ring.bytes += text.utf8.count
            ring.latest = line.sequence
            while ring.lines.count > limits.linesPerService || (ring.bytes > limits.bytesPerService && ring.lines.count > 1) {
                ring.bytes -= ring.lines.removeFirst().message.utf8.count
            }
            state.rings[service] = ring
            return (line, state.followers.values.filter { $0.0 == service }.map(\.1))
        }
        for follower in followers { follower.yield(line) }
    }

    /// The last `count` lines of `service` (those after sequence number
    /// `after`, if given), oldest first.
    public func lines(of service: String, last count: Int, after: UInt64 = 0) -> [Line] {
        state.withLock { state in
            guard let ring = state.rings[service], count > 0 else { return [] }
            return Array(ring.lines.lazy.filter { $0.sequence > after }.suffix(count))
        }
    }

    /// ``lines(of:last:after:)``, waiting up to `timeout` for a first line
    /// when there is none yet: a reader that follows asks again with the last
    /// sequence number it saw (a long poll).
    public func lines(of service: String, last count: Int, after: UInt64, waitingUpTo timeout: Duration) async -> [Line] {
        let arrivals = follow(service, buffer: 1)
        let present = lines(of: service, last: count, after: after)
        guard present.isEmpty, timeout > .zero else { return present }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in arrivals { return } }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return lines(of: service, last: count, after: after)
    }

    /// The lines of `service` from now on, until the stream is cancelled or
    /// ``finishFollowers()`` ends it. A reader that falls behind by more than
    /// `buffer` lines misses the oldest of them rather than holding memory.
    public func follow(_ service: String, buffer: Int = 1000) -> AsyncStream<Line> {
        let (stream, continuation) = AsyncStream<Line>.makeStream(bufferingPolicy: .bufferingNewest(buffer))
        let identifier = state.withLock { state in
            state.nextFollower += 1
            state.followers[state.nextFollower] = (service, continuation)
            return state.nextFollower
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.followers.removeValue(forKey: identifier) }
        }
        return stream
    }

    /// Ends every stream from ``follow(_:buffer:)``: the host is shutting down.
    public func finishFollowers() {
        let followers = state.withLock { state in
            defer { state.followers.removeAll() }
            return state.followers.values.map(\.1)
        }
        for follower in followers { follower.finish() }
    }
}
