import ServiceHost

/// Whether the host is ready, as `/readyz` answers, in Kubernetes' own
/// manner: one check per service, `[+]NAME ok` or `[-]NAME state: why`.
///
/// Ready once the initial start is complete and no service is `starting`,
/// in `backoff` or `failed`: every service that should run, runs. A
/// service that is stopped (by an operator, or by its restart policy) or
/// stopping is not expected to run and does not count against it.
public struct Readiness: Sendable, Equatable {
    public struct Check: Sendable, Equatable {
        public var service: String
        public var ok: Bool
        /// `ok`, or the state and why ("failed: svc_create returned -3").
        public var detail: String
    }

    public var ready: Bool
    public var initialStartComplete: Bool
    public var checks: [Check]

    public init(samples: [ServiceSample], initialStartComplete: Bool) {
        self.initialStartComplete = initialStartComplete
        checks = samples.map { sample in
            switch sample.state {
            case .running, .stopped, .stopping, .idle:
                Check(service: sample.name, ok: true, detail: "ok")
            case .starting:
                Check(service: sample.name, ok: false,
                      detail: sample.waitingFor.isEmpty ? "starting" : "starting: waiting for \(sample.waitingFor.joined(separator: ", "))")
            case .backoff:
                Check(service: sample.name, ok: false, detail: "backoff: waiting to be restarted")
            case .failed:
                Check(service: sample.name, ok: false, detail: "failed: \(sample.failure ?? "gave up")")
            }
        }
        ready = initialStartComplete && checks.allSatisfy(\.ok)
    }

    /// The HTTP status: 200 when ready, 503 when not.
    public var status: Int { ready ? 200 : 503 }

    /// The body: `ok` when ready and not `verbose`; otherwise every check,
    /// then the verdict. Names and reasons are written on one line each
    /// (line breaks escaped), so that no service can forge a check.
    public func text(verbose: Bool) -> String {
        if ready && !verbose { return "ok\n" }
        var lines = [initialStartComplete ? "[+]initial-start ok" : "[-]initial-start: not complete"]
        lines += checks.map { "[\($0.ok ? "+" : "-")]\(Self.oneLine($0.service)) \(Self.oneLine($0.detail))" }
        lines.append(ready ? "readyz check passed" : "readyz check failed")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func oneLine(_ text: String) -> String {
        guard text.contains(where: { $0.isNewline || $0 == "\r" }) else { return text }
        return text.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    }
}
