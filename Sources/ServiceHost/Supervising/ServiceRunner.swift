import CThreadShims
import Foundation

/// Runs one service on a thread of its own, from a start order until the
/// service stays stopped: start, event loop, stop, and, when the manager
/// decides so, the next start.
///
/// A restart happens on the same thread right after the stop, with no hop to
/// another thread or timer in between, so a restart costs the calls into the
/// service and a policy decision. Plugin code may block, so services never
/// run on Swift's cooperative thread pool.
final class ServiceRunner: @unchecked Sendable {
    let service: BaseService
    /// Weak: the manager keeps its runners, and a runner that kept its manager
    /// would keep a released ``Scheduler``'s manager, services and runtime
    /// directory alive. Without a manager there is no one to supervise the
    /// service, so the run ends.
    private weak var manager: ServiceManager?
    private let initialDelay: Duration
    /// Completed once the thread has left the service alone for good.
    let finished = Completion()

    init(service: BaseService, manager: ServiceManager, initialDelay: Duration) {
        self.service = service
        self.manager = manager
        self.initialDelay = initialDelay
    }

    func launch() {
        let interval = service.configuration.interval
        do {
            try HostThread.spawn(name: HostThread.name(forService: service.name)) { [self] in
                // Pauses end on a shared grid (see BaseService.wakeupGrid); the
                // timer slack lets the kernel fire the timers of one grid point together.
                if let grid = BaseService.wakeupGrid(for: interval) {
                    _ = cthread_set_timer_slack(UInt64(grid.nanoseconds))
                }
                ThreadExitHook.arm { [self] in threadExited() }
                run()
                ThreadExitHook.disarm()
                finished.complete()
            }
        } catch {
            // The manager launches runners after releasing its lock, so it can be told at once.
            manager?.runnerFailed(service, self, reason: "\(error)")
            finished.complete()
        }
    }

    /// The plugin ended this thread with `pthread_exit` inside one of its calls:
    /// the service is failed for good (its thread, and any state on it, is gone).
    private func threadExited() {
        manager?.runnerFailed(service, self, reason: "svc_loop called pthread_exit (thread isolation); the service's thread is gone")
        finished.complete()
    }

    /// Returns once the thread has left the service alone for good.
    func waitUntilFinished() async {
        await finished.wait()
    }

    private func run() {
        let signal = service.stopSignal
        if let clock = service.callClock {
            Watchdog.shared.watch(clock)
        }
        defer {
            if let clock = service.callClock { Watchdog.shared.unwatch(clock) }
        }
        if initialDelay > .zero, signal.pause(for: initialDelay, unless: .ordered) {
            return
        }
        while signal.request != .ordered {
            let began = ContinuousClock.now
            let reason: StopReason
            do {
                if let failure = try service.start() {
                    reason = .startFailed(failure)
                } else {
                    manager?.serviceStarted(service, by: self)
                    reason = service.runEventLoop()
                    try service.stop()
                }
            } catch {
                // Only an illegal transition lands here: the runner owns the
                // service's transitions, so this is a host bug, not a plugin's.
                manager?.runnerFailed(service, self, reason: "internal error (a bug in the host): \(error)")
                return
            }
            // Not held across the pause below, so that a released scheduler is freed at once.
            guard let decision = manager?.serviceStopped(service, by: self, reason: reason, ran: ContinuousClock.now - began) else {
                return
            }
            switch decision {
            case .remainStopped:
                return
            case .restart(let delay):
                if delay > .zero, signal.pause(for: delay, unless: .ordered) {
                    return
                }
            }
        }
    }
}
