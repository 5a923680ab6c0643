import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One worker process of a process-isolated service, from its fork to its
/// reaping, and the one receive loop that every step (loading and
/// `svc_create`, `svc_loop`, `svc_stop`) waits in.
///
/// The loop handles what is the same in every step: the worker's log lines,
/// its own hung reports and heartbeats, its silence past the liveness limit
/// (`watchdog_ms`), the start deadline (`start_timeout_ms`, loading included),
/// an ordered stop and its deadline, a malformed message, its death. It
/// returns only what the step decides on: a message, or how the worker ended.
/// Every wait has a deadline or is ended by the worker's death: the fork
/// server writes its exit status on the channel and ends the channel then,
/// even when a process the plugin forked holds the worker's end open.
final class WorkerSession: @unchecked Sendable {
    /// The loop turns of this worker's run, as it last reported them (only
    /// the service's thread, which reads its messages, writes it).
    let loops = LoopCounter()

    /// What the service waits for.
    enum Step: String {
        case create = "svc_create"
        case loop = "svc_loop"
        case stop = "svc_stop"
    }

    /// What a wait ended with.
    enum Event {
        /// A message for the step to act on; log lines, hung reports and
        /// heartbeats never reach the step.
        case message(WorkerMessage)
        /// The worker is gone and reaped; further waits return this again.
        case ended(Ending)
    }

    /// How a worker ended.
    struct Ending {
        let status: ExitStatus
        /// Why it was killed or said it was hung, as the service reports it
        /// (with the file); `nil` when nothing was known before it ended.
        let hung: String?
        /// ``hung`` without the file, for a refused new version's reason.
        let cause: String?
        /// The host killed it because an ordered stop's time ran out.
        let killedForStop: Bool
        /// The host killed it because `svc_stop` overran its time.
        let overranStop: Bool
        /// It sent something that is not a message (what), and was killed.
        let malformed: String?
    }

    /// What the session needs to know of its service.
    struct Settings: Sendable {
        let file: String
        let stopTimeout: Duration
        let startTimeout: Duration?
        let watchdog: Duration?
    }

    let channel: WorkerChannel
    let forked: WorkerLauncher.Forked
    var pid: pid_t { forked.pid }
    /// Wakes the service's thread from a wait when a stop is ordered.
    private let wakeup = Wakeup()
    private let launcher: WorkerLauncher
    private let settings: Settings
    private let logger: Logger
    /// Set once the channel is closed, under the lock that ``orderStop()``
    /// sends under: no order ever goes to a descriptor number reused since.
    private let finished = Mutex(false)

    // Touched only on the service's thread.
    private var stopDeadline: ContinuousClock.Instant?
    private var startDeadline: ContinuousClock.Instant?
    private var stopStepDeadline: ContinuousClock.Instant?
    /// After the host killed the worker: the end of the wait for its death.
    private var killDeadline: ContinuousClock.Instant?
    private var liveness: Liveness
    private var startedLoading = false
    private var loaded = false
    private var hung: String?
    private var cause: String?
    private var killedForStop = false
    private var overranStop = false
    private var ending: Ending?
    /// The exit status the fork server wrote on the channel when the worker died.
    private var reportedStatus: ExitStatus?
    /// The channel reached its end: the worker is dead (or its fork server is).
    private var reachedEnd = false

    /// Where the worker's `state_save`s and `fd_keep`s go, and the run they
    /// count for; `nil`: nowhere (a test's session).
    private let keptState: KeptState?
    let run: KeptState.Run?

    init(launched: (channel: WorkerChannel, forked: WorkerLauncher.Forked),
         launcher: WorkerLauncher, settings: Settings, logger: Logger, keptState: KeptState? = nil, run: KeptState.Run? = nil) {
        self.keptState = keptState
        self.run = run
        channel = launched.channel
        forked = launched.forked
        self.launcher = launcher
        self.settings = settings
        self.logger = logger
        liveness = Liveness(limit: Self.livenessLimit(watchdog: settings.watchdog))
        // start_timeout_ms covers loading too (the scan's verdict may be cached
        // while the worker's own load hangs; the worker's clock covers
        // svc_create only); until the worker says it starts loading, a loaded
        // machine may take a while to run it at all (see ``startAllowance``).
        startDeadline = settings.startTimeout.map { ContinuousClock.now + Self.startAllowance($0) }
    }

    /// How long a worker may take to say it starts loading: as long as a scan
    /// may take to start (``Limits/defaultScanTimeout``), or the start timeout if longer.
    static func startAllowance(_ startTimeout: Duration) -> Duration {
        max(startTimeout, Limits.defaultScanTimeout)
    }

    /// How long the host waits for `svc_create` past `start_timeout_ms` before
    /// it kills the worker itself: the worker's own clock reports an overrun
    /// with its duration, and this is the backstop for a worker that cannot
    /// (frozen, or starved on a loaded machine), never a race with it.
    static func createBackstop(_ startTimeout: Duration) -> Duration {
        startTimeout + max(startTimeout, .seconds(1))
    }

    /// How long a worker with a watchdog may stay silent: it says it is alive
    /// every half watchdog period, so only a stopped or frozen process misses this.
    static func livenessLimit(watchdog: Duration?) -> Duration? {
        watchdog.map { max($0 * 4, .seconds(1)) }
    }

    /// How long a worker may stay silent before the host looks whether it
    /// died unreported: its fork server reports every death at once, so this
    /// only matters when the server is stopped or stuck (which the next
    /// request to it then finds out and mends). Longer than an idle worker's
    /// heartbeat, so that an idle service's wait is not woken for it.
    static func deathCheckInterval(in step: Step) -> Duration {
        step == .stop ? .milliseconds(100) : .milliseconds(1_500)
    }

    /// Starts the silence count afresh: the worker's messages waited unread
    /// (an overlapping reload's new worker, while the service's thread ended
    /// the old one), so the time since it was last heard says nothing.
    func resumeWatching() {
        liveness.heard()
    }

    /// Passes an ordered stop on to the worker and wakes the service's wait;
    /// from any thread.
    func orderStop() {
        finished.withLock { finished in
            guard !finished else { return }
            _ = channel.send(.stop, until: .now + settings.stopTimeout)
            wakeup.signal()
        }
    }

    /// Waits for what the worker says or does next in `step`.
    func next(_ step: Step) -> Event {
        if let ending { return .ended(ending) }
        if step == .stop, stopStepDeadline == nil {
            // svc_stop gets what is left of an ordered stop's time, or a whole stop timeout.
            stopStepDeadline = stopDeadline ?? .now + settings.stopTimeout
        }
        while true {
            let deadline: ContinuousClock.Instant? = if let killDeadline {
                killDeadline
            } else if step == .stop {
                stopStepDeadline
            } else {
                [watchesLiveness(in: step) ? liveness.deadline(or: stopDeadline) : stopDeadline,
                 step == .create ? startDeadline : nil].compactMap { $0 }.min()
            }
            // A silent worker may have died under a fork server that cannot say
            // so (stopped or stuck): looked at now and then, between the deadlines.
            let deathCheck = killDeadline == nil ? liveness.lastLooked + Self.deathCheckInterval(in: step) : nil
            let wait = [deadline, deathCheck].compactMap { $0 }.min()
            let received = channel.receive(until: wait, wake: step == .stop ? nil : wakeup)
            if case .message = received { liveness.heard() }
            if case .timedOut = received, let deathCheck, deadline.map({ deathCheck < $0 }) ?? true {
                liveness.looked()
                if ExitStatus.isZombie(pid) { return .ended(end(malformed: nil)) }
                continue
            }
            switch received {
            case .message(.reaped(let status)):
                // The fork server's word that the worker died; the end of file follows.
                reportedStatus = status
            case .message(.log(let level, let message)):
                logger.pluginLine(level: level, message)
            case .message(.hung(let call, let elapsed)):
                cause = nil
                hung = Self.hungReason(call: call, elapsed: .nanoseconds(elapsed), settings: settings)
            case .message(.alive(let count)):
                // A heartbeat read before the stop report may arrive after it: never backwards.
                loops.store(max(loops.value, count))
                continue
            case .message(.stateSaved(let size)):
                // Taken even from a worker being killed: it was saved before.
                keep(size: Int(size))
                continue
            case .message(.descriptorKept(let name, let present)):
                keep(descriptorNamed: name, present: present)
                continue
            case .message(.keepRefused(let name, let code)):
                logger.warning("\(settings.file): \(KeptState.refusal(of: PluginText.escaped(name), code: code))")
                continue
            case .message(.loading) where step == .create:
                startedLoading = true
                startDeadline = settings.startTimeout.map { ContinuousClock.now + $0 }
            case .message where killDeadline != nil:
                // Killed already: what it said before dying no longer counts
                // (a `.created` sent just before a start-timeout kill is no start).
                continue
            case .message(let message):
                if case .stopped(let report) = message { loops.store(max(loops.value, report.loops)) }
                if case .loaded = message, step == .create {
                    loaded = true
                    startDeadline = settings.startTimeout.map { ContinuousClock.now + Self.createBackstop($0) }
                }
                return .message(message)
            case .woken:
                // Only ``orderStop()`` wakes this wait.
                wakeup.clear()
                if stopDeadline == nil { stopDeadline = .now + settings.stopTimeout }
            case .malformed(let what):
                kill(pid, SIGKILL)
                return .ended(end(malformed: what))
            case .endOfFile:
                reachedEnd = true
                return .ended(end(malformed: nil))
            case .timedOut:
                timedOut(in: step)
                if let ending { return .ended(ending) }
            }
        }
    }

    /// Keeps what the worker saved, from the sealed memfd that came with its message.
    private func keep(size: Int) {
        guard let keptState, let run else { return }
        // The worker's sealed memfd is kept as it came: no copy, and the next
        // worker gets the same one.
        let code = size == 0 ? keptState.save(nil, count: 0, by: run)
            : channel.takePassedSealed(size: size).map { keptState.save(sealed: $0.descriptor, mapping: $0.mapping, by: run) }
        // A run that was replaced (an overlapping reload) saves in vain: its successor read what it had.
        if let code, code == 0 || code == -ESTALE { return }
        logger.error("\(settings.file): state_save of \(size) bytes was not kept: \(code.map { "\(Errno(-$0))" } ?? "the worker sent no sealed memfd of that size")")
    }

    /// Keeps the descriptor that came with the worker's message (the worker
    /// checked the name and the limit; checked again, a worker being untrusted).
    private func keep(descriptorNamed name: String, present: Bool) {
        let passed = channel.takePassedDescriptor()
        guard let keptState, let run else {
            if let passed { close(passed) }
            return
        }
        let code: Int32
        if present {
            guard let passed else {
                logger.error("\(settings.file): fd_keep(\"\(name)\") was not kept: the worker passed no descriptor with it")
                return
            }
            code = keptState.keep(adopting: passed, named: name, by: run)
        } else {
            if let passed { close(passed) }
            code = keptState.keep(-1, named: name, by: run)
        }
        if code != 0, code != -ESTALE, run.logsRefusal(code) {
            logger.warning("\(settings.file): \(KeptState.refusal(of: name, code: code))")
        }
    }

    /// Whether silence counts in `step`: not before a starting worker says it
    /// starts loading, which a busy machine may delay (``startAllowance``).
    private func watchesLiveness(in step: Step) -> Bool {
        step != .create || startedLoading
    }

    /// Kills the worker for the deadline that passed, noting why; the wait
    /// goes on until its death, so that its last words are still read.
    private func timedOut(in step: Step) {
        let now = ContinuousClock.now
        if killDeadline != nil {
            // Killed, and not dead within a stop timeout (in the kernel's
            // hands, or its pidfd is missing): reaped all the same.
            ending = end(malformed: nil)
            return
        }
        switch step {
        case .stop:
            // The service reports it, with the worker's status.
            overranStop = true
        case .create, .loop:
            if watchesLiveness(in: step), liveness.expired(before: stopDeadline) {
                let silence = liveness.silence
                hung = "\(settings.file): hung: the worker process made no progress for \(silence.milliseconds) ms (watchdog_ms = \(settings.watchdog?.milliseconds ?? 0), process isolation: stopped or frozen); worker killed"
                cause = "the new version's worker made no progress for \(silence.milliseconds) ms"
                logger.error("\(hung!)")
            } else if step == .create, let startDeadline, now >= startDeadline, stopDeadline.map({ now < $0 }) != false {
                let limit = settings.startTimeout ?? .zero
                cause = if !startedLoading {
                    "the worker did not start loading the plugin within \(Self.startAllowance(limit).milliseconds) ms"
                } else if loaded {
                    "svc_create did not return within start_timeout_ms (\(limit.milliseconds) ms) and the worker did not report it"
                } else {
                    "loading the plugin did not finish within start_timeout_ms (\(limit.milliseconds) ms)"
                }
                hung = "\(settings.file): hung: \(cause!); worker killed"
                logger.error("\(hung!)")
            } else {
                // An ordered stop's time ran out: a start is simply abandoned,
                // a loop that ignores the stop is worth a line.
                killedForStop = true
                if step == .loop {
                    logger.error("svc_loop did not return within stop_timeout_ms (\(settings.stopTimeout.milliseconds) ms) of the stop; killing the worker")
                }
            }
        }
        kill(pid, SIGKILL)
        killDeadline = now + settings.stopTimeout
    }

    private func end(malformed: String?) -> Ending {
        if let ending { return ending }
        let status = finish()
        let ended = Ending(status: status, hung: hung, cause: cause, killedForStop: killedForStop,
                           overranStop: overranStop, malformed: malformed)
        ending = ended
        return ended
    }

    /// Collects the exit status of a worker whose channel reached its end or
    /// which was killed, and releases it to the fork server.
    ///
    /// Before its channel's end, a worker is alive or an unreaped zombie, so
    /// signalling its pid is safe; after the release it may be reaped and its
    /// pid reused, so nothing here signals it after that.
    private func finish() -> ExitStatus {
        // Dead when its channel ended, or a zombie whose fork server did not
        // say so (stopped or stuck): its status is then asked for, which
        // replaces a server that does not answer.
        if !reachedEnd {
            // A zombie's server gets a moment to report it (it may be busy
            // with many deaths at once) before it is asked.
            var dead = true
            if ExitStatus.isZombie(pid) {
                _ = awaitEnd(by: .now + min(settings.stopTimeout, Self.zombieReportGrace))
            } else {
                dead = awaitDeath(within: settings.stopTimeout)
            }
            if !dead, killDeadline == nil {
                // It said its last word and lives on.
                kill(pid, SIGKILL)
                dead = awaitDeath(within: settings.stopTimeout)
            }
            guard dead else {
                // Killed, and not dead a stop timeout later (stuck in the kernel).
                closeChannel()
                // Asking the fork server to reap it would stall the server,
                // and with it every other worker; it reaps it when it dies.
                launcher.release(forked)
                logger.error("worker \(pid) did not die within stop_timeout_ms of SIGKILL; it is left to its fork server")
                return ExitStatus(.survivedKill)
            }
        }
        closeChannel()
        let status: ExitStatus
        if let reportedStatus {
            launcher.release(forked)
            status = reportedStatus
        } else {
            // The fork server could not write it (the host had left the
            // channel's queue full) or is gone: asked for, or known to be lost.
            status = launcher.reap(forked)
        }
        return status == ExitStatus(.exited(WorkerProcess.socketClosedStatus)) ? ExitStatus(.closedItsConnection) : status
    }

    /// How long the fork server may take to report a worker the host already
    /// saw die before it is asked.
    static let zombieReportGrace = Duration.milliseconds(200)

    /// Whether the worker is dead within `limit`: its channel ended, or it is a zombie by then.
    private func awaitDeath(within limit: Duration) -> Bool {
        awaitEnd(by: .now + limit) || ExitStatus.isZombie(pid)
    }

    /// Reads the channel to its end (keeping the fork server's exit status),
    /// by `deadline`; whether it ended.
    private func awaitEnd(by deadline: ContinuousClock.Instant) -> Bool {
        while true {
            switch channel.receive(until: deadline) {
            case .message(.reaped(let status)): reportedStatus = status
            case .message, .woken, .malformed: continue
            case .endOfFile:
                reachedEnd = true
                return true
            case .timedOut: return false
            }
        }
    }

    private func closeChannel() {
        finished.withLock { finished in
            finished = true
            channel.close()
        }
    }

    /// Reaps a worker that said its last word (its load or `svc_create`
    /// failed, and it exits): waits a stop timeout for its death, then kills it.
    func reap() -> ExitStatus { end(malformed: nil).status }

    /// Kills and reaps a worker no step will wait for (its assignment could not be sent).
    func abandon() -> ExitStatus {
        kill(pid, SIGKILL)
        return end(malformed: nil).status
    }

    private static func hungReason(call: UInt8, elapsed: Duration, settings: Settings) -> String {
        call == 0
            ? "\(settings.file): hung: svc_loop ran for \(elapsed.milliseconds) ms (watchdog_ms = \(settings.watchdog?.milliseconds ?? 0)); worker killed"
            : "\(settings.file): hung: svc_create ran for \(elapsed.milliseconds) ms (start_timeout_ms = \(settings.startTimeout?.milliseconds ?? 0)); worker killed"
    }
}

/// When a worker was last heard from, and whether its silence has lasted too long.
private struct Liveness {
    let limit: Duration?
    private var lastHeard = ContinuousClock.now
    /// When it was last heard from or looked at in `/proc` (see ``WorkerSession/deathCheckInterval(in:)``).
    private(set) var lastLooked = ContinuousClock.now

    init(limit: Duration?) { self.limit = limit }

    mutating func heard() {
        lastHeard = .now
        lastLooked = lastHeard
    }

    mutating func looked() { lastLooked = .now }

    var silence: Duration { .now - lastHeard }

    /// The earlier of the liveness deadline and `other`.
    func deadline(or other: ContinuousClock.Instant?) -> ContinuousClock.Instant? {
        guard let limit else { return other }
        let own = lastHeard + limit
        return other.map { min($0, own) } ?? own
    }

    /// Whether a timeout was the silence's, not the stop deadline's.
    func expired(before stopDeadline: ContinuousClock.Instant?) -> Bool {
        guard let limit else { return false }
        let now = ContinuousClock.now
        if let stopDeadline, now >= stopDeadline { return false }
        return now >= lastHeard + limit
    }
}
