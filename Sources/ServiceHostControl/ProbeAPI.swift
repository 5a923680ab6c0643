import Foundation
import ServiceHost
import ServiceHostMetrics

/// What the TCP listener (`run --http`) answers: metrics and health, read
/// only. It holds no ``ControlAPI`` and no way to order anything, so no
/// control verb is reachable over TCP whatever the request.
///
/// - `GET /metrics`: Prometheus' text format (``HostMetrics``).
/// - `GET /livez`: 200 while the supervisor's main loop beats (``HostPulse``), else 503.
/// - `GET /readyz` (`?verbose`): 200 when every service that should run
///   runs, else 503, with one line per service (``Readiness``).
public final class ProbeAPI: Sendable {
    private let scheduler: Scheduler
    private let metrics: HostMetrics
    private let pulse: HostPulse

    public init(scheduler: Scheduler, metrics: HostMetrics, pulse: HostPulse) {
        self.scheduler = scheduler
        self.metrics = metrics
        self.pulse = pulse
    }

    public func handle(method: String, target: String) -> ControlAPI.Response {
        let request = ControlAPI.Request(method: method, target: target)
        let paths = ["/metrics", "/livez", "/readyz"]
        guard paths.contains(request.path) else {
            return Self.text(404, "not found: \(request.path); this listener serves only \(paths.joined(separator: ", "))\n")
        }
        guard method == "GET" else {
            return Self.text(405, "\(method) is not allowed on \(request.path); use GET\n")
        }
        switch request.path {
        case "/metrics":
            return ControlAPI.Response(status: 200, body: Data(metrics.exposition()), contentType: HostMetrics.contentType)
        case "/livez":
            let age = pulse.age()
            let verbose = request.query["verbose"] != nil
            if age <= pulse.staleAfter {
                return Self.text(200, verbose ? "[+]supervisor ok\nlivez check passed\n" : "ok\n")
            }
            return Self.text(503, "[-]supervisor: its main loop last ticked \(String(format: "%.1f", age.seconds)) s ago "
                + "(more than \(pulse.staleAfter) allows)\nlivez check failed\n")
        default:
            let readiness = Readiness(samples: scheduler.samples(), initialStartComplete: pulse.hasStarted)
            return Self.text(readiness.status, readiness.text(verbose: request.query["verbose"] != nil))
        }
    }

    private static func text(_ status: Int, _ body: String) -> ControlAPI.Response {
        ControlAPI.Response(status: status, body: Data(body.utf8), contentType: "text/plain; charset=utf-8")
    }
}
