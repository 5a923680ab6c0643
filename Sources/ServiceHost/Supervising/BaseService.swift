import Foundation

/// A service supervised by the host: subclass it and supply the three steps.
///
/// The event loop belongs to `BaseService` and cannot be overridden: it
/// calls ``onCreate()`` once per start, ``onLoop()`` until the service
/// finishes, fails, asks to stop or is ordered to, and ``onStop()`` once after
/// every successful ``onCreate()``. Every step runs on the service's own
/// thread, one after another. Because the loop and the state machine are
/// not a subclass's to change, no service can end up running while marked
/// stopped, or stopped without its ``onStop()`` having run.
///
/// States: `idle` when created, then only `started` or `stopped`.
open class BaseService: @unchecked Sendable {
    private enum State {
        case idle
        case started
        case stopped
    }

    public let name: String
    public let configuration: ServiceConfiguration

    let stopSignal = StopSignal()
    private let lock = NSLock()
    private var state: State = .idle
    private var storedMetadata: ServiceMetadata
    /// Loop turns in the service's life, read when metrics are scraped.
    let loopCounter: LoopCounter

    /// - Parameters:
    ///   - name: the service's name, unique within a scheduler.
    ///   - configuration: how it runs and restarts.
    public init(name: String, configuration: ServiceConfiguration = .init()) {
        self.name = name
        loopCounter = LoopCounter()
        self.configuration = configuration
        storedMetadata = ServiceMetadata(
            name: name, delay: configuration.delay, retries: configuration.retries,
            restartPolicy: configuration.restart ?? .always)
    }

    /// A service whose loop turns are counted in `loopCounter` (a worker's, which its heartbeat reports).
    init(name: String, configuration: ServiceConfiguration, loopCounter: LoopCounter) {
        self.name = name
        self.configuration = configuration
        self.loopCounter = loopCounter
        storedMetadata = ServiceMetadata(
            name: name, delay: configuration.delay, retries: configuration.retries,
            restartPolicy: configuration.restart ?? .always)
    }

    // MARK: Steps for subclasses

    /// Creates what the service needs to run. Throwing fails the start; then
    /// ``onStop()`` is not called.
    open func onCreate() throws(ServiceFailure) {}

    /// Does one unit of work. May block. The default finishes at once.
    open func onLoop() -> LoopOutcome { .done }

    /// Releases what ``onCreate()`` made. Called once after every successful create.
    open func onStop() {}

    // MARK: For the service and its users

    /// Asks the host to stop this service once the current loop turn returns:
    /// the service stopping itself (the seed's `self.stop()`), which recovery
    /// restarts. Safe from any thread.
    public final func requestStop() {
        stopSignal.raise(.requested)
    }

    public final var currentState: ServiceState {
        lock.withLock {
            switch state {
            case .idle: .idle
            case .started: .started
            case .stopped: .stopped
            }
        }
    }

    public final var metadata: ServiceMetadata {
        lock.withLock { storedMetadata }
    }

    // MARK: The state machine and event loop (host side)

    /// Runs ``onCreate()`` and moves to `started`. A failed create moves to
    /// `stopped`, is recorded, and is returned; `nil` means started.
    final func start() throws(ServiceError) -> ServiceFailure? {
        lock.lock()
        switch state {
        case .idle, .stopped:
            lock.unlock()
        case .started:
            lock.unlock()
            throw ServiceError(.illegalTransition, service: name, reason: "cannot start: already started")
        }
        stopSignal.clearRequested()
        let clock = callClock
        clock?.createBegins()
        defer { clock?.createEnds() }
        do {
            try onCreate()
        } catch {
            lock.withLock {
                state = .stopped
                storedMetadata.record(error)
            }
            return error
        }
        lock.withLock {
            state = .started
            storedMetadata.starts += 1
            storedMetadata.lastStarted = Date()
        }
        return nil
    }

    /// Calls ``onStop()`` and moves to `stopped`.
    final func stop() throws(ServiceError) {
        lock.lock()
        switch state {
        case .started:
            lock.unlock()
        case .idle:
            lock.unlock()
            throw ServiceError(.illegalTransition, service: name, reason: "cannot stop: never started")
        case .stopped:
            lock.unlock()
            throw ServiceError(.illegalTransition, service: name, reason: "cannot stop: already stopped")
        }
        onStop()
        lock.withLock { state = .stopped }
    }

    /// The event loop: turns ``onLoop()`` until the service finishes, fails,
    /// or a stop is requested or ordered. Pauses for the configured interval
    /// between turns, cut short by any stop.
    final func runEventLoop() -> StopReason {
        let interval = configuration.interval
        let pauses = interval > .zero
        let grid = Self.wakeupGrid(for: interval)
        // Two copies of the loop, so that a service without a watchdog pays
        // nothing for the stamps.
        let counter = loopCounter
        var loops = counter.value
        if let clock = callClock, clock.loopLimit != nil {
            while true {
                if let stop = pendingStop() { return stop }
                clock.loopBegins()
                let outcome = onLoop()
                clock.loopEnds()
                loops &+= 1
                counter.store(loops)
                if let end = end(of: outcome) { return end }
                if pauses { stopSignal.pause(for: interval, unless: .handover, grid: grid) }
            }
        }
        while true {
            if let stop = pendingStop() { return stop }
            let outcome = onLoop()
            loops &+= 1
            counter.store(loops)
            if let end = end(of: outcome) { return end }
            if pauses { stopSignal.pause(for: interval, unless: .handover, grid: grid) }
        }
    }

    /// How many times its loop step returned, in the service's life. Safe
    /// from any thread; a service whose loop runs elsewhere (a worker
    /// process) reports that loop's count instead.
    public var loopsCompleted: UInt64 { loopCounter.value }

    /// How late a pause of `interval` may end: 1 % of it, at most 10 ms, on
    /// a grid shared by every service so that their wakeups coalesce. A
    /// thousand services waking once a second cost the host about half as
    /// much CPU this way (see docs/PERFORMANCE.md).
    static func wakeupGrid(for interval: Duration) -> Duration? {
        let lateness = min(interval / 100, .milliseconds(10))
        return lateness >= .milliseconds(1) ? lateness : nil
    }

    @inline(__always)
    private func pendingStop() -> StopReason? {
        switch stopSignal.request {
        case .none, .handover: nil
        case .requested: .requested
        case .ordered: .ordered
        }
    }

    @inline(__always)
    private func end(of outcome: LoopOutcome) -> StopReason? {
        switch outcome {
        case .continue:
            return nil
        case .done:
            return .finished
        case .failed(let failure):
            lock.withLock { storedMetadata.record(failure) }
            return .failed(failure)
        }
    }

    /// Where its code runs.
    var isolation: Isolation { .thread }

    /// The process its code runs in when that is not the host's (a worker's pid).
    var processID: Int32? { nil }

    /// Whether the service cuts a stop short by itself once its stop timeout
    /// passes (a worker process can be killed; a thread cannot).
    var enforcesStopTimeout: Bool { false }

    /// Whether the service times its own create and loop calls (a worker
    /// process runs its own watchdog, which the host backs up by killing it),
    /// so the manager must not attach a thread-isolation call clock to it.
    var supervisesItsOwnCalls: Bool { false }

    /// Whether a run that ended this way cannot succeed until something
    /// outside changes (a plugin that cannot be loaded), so restarting is pointless.
    func stopsForGood(after reason: StopReason) -> Bool { false }

    /// Where this service's create and loop calls are stamped for the
    /// ``Watchdog``; set before the first start when it has a watchdog or a start timeout.
    var callClock: CallClock?

    /// Where the service's events go; set by the manager before the first start.
    var eventSink: (@Sendable (ServiceEvent) -> Void)?

    final func report(_ kind: ServiceEvent.Kind) {
        eventSink?(ServiceEvent(service: name, kind: kind))
    }

    /// Puts the service back to `idle`. For tests only: the seed kept this
    /// as `service.idle()` for its unit tests and warned against other uses.
    final func resetToIdle() {
        lock.withLock { state = .idle }
    }

    /// Changes the metadata under the service's lock.
    final func updateMetadata<Result>(_ body: (inout ServiceMetadata) -> Result) -> Result {
        lock.withLock { body(&storedMetadata) }
    }
}
