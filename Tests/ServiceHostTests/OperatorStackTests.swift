import Foundation
import Testing
@testable import ServiceHost
@testable import ServiceHostControl
@testable import ServiceHostMetrics

/// The pure parts of the operator's stack: readiness, the pulse, the tick's
/// status line, addresses, `/proc` parsing, restart causes. No threads, no sleeps.
@Suite("Operator stack, pure")
struct OperatorStackTests {
    @Test func readinessCountsOnlyWhatShouldRun() {
        let samples = [
            ServiceSample(name: "Up", state: .running),
            ServiceSample(name: "Off", state: .stopped),
            ServiceSample(name: "Fresh", state: .idle),
            ServiceSample(name: "Leaving", state: .stopping),
        ]
        #expect(Readiness(samples: samples, initialStartComplete: true).ready)
        #expect(Readiness(samples: samples, initialStartComplete: true).text(verbose: false) == "ok\n")
        #expect(!Readiness(samples: samples, initialStartComplete: false).ready, "not before the initial start")
        for state in [ServiceStatus.State.starting, .backoff, .failed] {
            let readiness = Readiness(samples: samples + [ServiceSample(name: "X", state: state)], initialStartComplete: true)
            #expect(!readiness.ready && readiness.status == 503, "\(state)")
        }
        let failing = Readiness(samples: [
            ServiceSample(name: "A", state: .running),
            ServiceSample(name: "B", state: .failed, failure: "svc_create returned -3"),
            ServiceSample(name: "C", state: .starting, waitingFor: ["B"]),
            ServiceSample(name: "Evil\n[+]Forged", state: .backoff),
        ], initialStartComplete: true)
        #expect(failing.text(verbose: false) == """
            [+]initial-start ok
            [+]A ok
            [-]B failed: svc_create returned -3
            [-]C starting: waiting for B
            [-]Evil\\n[+]Forged backoff: waiting to be restarted
            readyz check failed

            """)
    }

    @Test func thePulseGoesStaleWithoutBeats() {
        let start = ContinuousClock.now
        let pulse = HostPulse(staleAfter: .seconds(5), now: start)
        #expect(pulse.isAlive(at: start + .seconds(5)))
        #expect(!pulse.isAlive(at: start + .seconds(6)))
        pulse.beat(at: start + .seconds(6))
        #expect(pulse.age(at: start + .seconds(7)) == .seconds(1))
        #expect(pulse.isAlive(at: start + .seconds(7)))
        #expect(!pulse.hasStarted)
        pulse.initialStartComplete()
        #expect(pulse.hasStarted)
    }

    @Test func theStatusLineChangesAtMostOnceASecondAndRunningAndFailedAlwaysShow() {
        #expect(SupervisorTick.summary([:]) == "0 running, 0 failed")
        #expect(SupervisorTick.summary([.running: 12, .backoff: 1]) == "12 running, 1 backoff, 0 failed")
        let counts = Counts()
        let start = ContinuousClock.now
        var tick = SupervisorTick(systemd: nil, pulse: HostPulse(now: start), counts: { counts.value }, now: start)
        #expect(tick.status == "0 running, 0 failed")
        counts.value = [.running: 1]
        tick.tick(at: start + .milliseconds(500))
        #expect(tick.status == "0 running, 0 failed", "too soon")
        tick.tick(at: start + .milliseconds(1000))
        #expect(tick.status == "1 running, 0 failed")
        counts.value = [.failed: 1]
        tick.tick(at: start + .milliseconds(1500), refreshingStatus: false)
        #expect(tick.status == "1 running, 0 failed", "not while stopping")
    }

    @Test func httpAddresses() throws {
        func parse(_ text: String) -> String {
            switch ProbeServer.Configuration.parse(text) {
            case .success(let configuration): "\(configuration.host) \(configuration.port)"
            case .failure(let error): error.description
            }
        }
        #expect(parse("127.0.0.1:9464") == "127.0.0.1 9464")
        #expect(parse(":9464") == "0.0.0.0 9464")
        #expect(parse("[::1]:9464") == "::1 9464")
        #expect(parse("::1:9464") == "'::1:9464': write an IPv6 address in brackets, as [::1]:9464")
        #expect(parse("localhost") == "'localhost' is not ADDRESS:PORT (e.g. 127.0.0.1:9464)")
        #expect(parse("a:70000") == "'70000' in 'a:70000' is not a port from 0 to 65535")
    }

    @Test func procStatIsReadFromTheLastParenthesis() throws {
        // A command name with spaces and a parenthesis of its own.
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 2048 18446744073709551615"
        let sample = try #require(ProcessSample.parse(stat: line, ticksPerSecond: 100, pageSize: 4096))
        #expect(sample.cpuSeconds == 3.0)
        #expect(sample.virtualBytes == 123_456_789)
        #expect(sample.residentBytes == 2048 * 4096)
        #expect(ProcessSample.parse(stat: "42 (x) S 1", ticksPerSecond: 100, pageSize: 4096) == nil)
        let own = try #require(ProcessSample.current())
        #expect(own.openDescriptors >= 3 && own.maxDescriptors >= own.openDescriptors && own.residentBytes > 0)
    }

    @Test func restartCausesFollowHowTheRunEnded() {
        #expect(RestartCause(after: .finished) == .done)
        #expect(RestartCause(after: .requested) == .stoppedItself)
        #expect(RestartCause(after: .failed(ServiceFailure(code: -5, message: "x"))) == .error)
        #expect(RestartCause(after: .failed(ServiceFailure(code: 9, message: "x", cause: .crash))) == .crash)
        #expect(RestartCause(after: .startFailed(ServiceFailure(code: -1, message: "x", cause: .watchdog))) == .watchdog)
        #expect(RestartCause.allCases.map(\.rawValue) == ["done", "stopped_itself", "error", "crash", "watchdog", "reload", "operator"])
        #expect(ReloadResult.allCases.map(\.rawValue) == ["ok", "refused", "rolled_back"])
    }
}

private final class Counts: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [ServiceStatus.State: Int] = [:]
    var value: [ServiceStatus.State: Int] {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
