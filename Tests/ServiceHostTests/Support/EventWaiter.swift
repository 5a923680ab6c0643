import ServiceHost

/// Reads a scheduler's events in order, for tests that await what happens
/// to a service rather than sleeping.
final class EventWaiter: @unchecked Sendable {
    private var iterator: AsyncStream<ServiceEvent>.AsyncIterator
    private(set) var seen: [ServiceEvent] = []

    init(_ scheduler: Scheduler) {
        iterator = scheduler.events().makeAsyncIterator()
    }

    /// Returns the next event (after those already consumed) that matches.
    @discardableResult
    func next(_ description: String = "event", timeout: Duration = .seconds(20),
              where predicate: @escaping @Sendable (ServiceEvent) -> Bool) async throws -> ServiceEvent {
        try await withDeadline(timeout, waiting: "\(description) (seen so far: \(seen.map(\.description)))") { [self] in
            while let event = await iterator.next() {
                seen.append(event)
                if predicate(event) { return event }
            }
            throw Timeout(waitingFor: "\(description): the event stream ended", after: .zero)
        }
    }

    /// Every event until the stream ends (at shutdown), after those already
    /// consumed; returns all events seen.
    func remaining(timeout: Duration = .seconds(20)) async throws -> [ServiceEvent] {
        try await withDeadline(timeout, waiting: "the end of the event stream") { [self] in
            while let event = await iterator.next() { seen.append(event) }
            return seen
        }
    }

    /// The first event of service `name` of the given kind, whether already
    /// read past by an earlier wait or still to come.
    @discardableResult
    func first(_ name: String, _ matches: @escaping @Sendable (ServiceEvent.Kind) -> Bool,
               timeout: Duration = .seconds(20)) async throws -> ServiceEvent {
        if let event = seen.first(where: { $0.service == name && matches($0.kind) }) { return event }
        return try await next(name, matches, timeout: timeout)
    }

    /// The next event of service `name` of the given kind.
    @discardableResult
    func next(_ name: String, _ matches: @escaping @Sendable (ServiceEvent.Kind) -> Bool,
              timeout: Duration = .seconds(20)) async throws -> ServiceEvent {
        try await next("event of \(name)", timeout: timeout) { $0.service == name && matches($0.kind) }
    }
}

extension ServiceEvent.Kind {
    var isStarted: Bool { if case .started = self { true } else { false } }
    var isStopped: Bool { if case .stopped = self { true } else { false } }
    var isRestarting: Bool { if case .restarting = self { true } else { false } }
    var isReloaded: Bool { if case .reloaded = self { true } else { false } }
    var isReloadRejected: Bool { if case .reloadRejected = self { true } else { false } }
    var isFailed: Bool { if case .failed = self { true } else { false } }
}
