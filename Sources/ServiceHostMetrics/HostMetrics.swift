import Foundation
import Prometheus
import ServiceHost
import Synchronization

/// The host's metrics in Prometheus' text format, kept in a swift-prometheus
/// registry. Nothing counts into the registry on the services' hot paths:
/// each scrape reads every service's plain counters (``Scheduler/samples()``)
/// and sets the registry's series from them, under one lock with the
/// emission, so a scrape never shows half an update. A service's series are
/// removed with it. Label values are escaped by swift-prometheus (2.4 and
/// later), so a service name with `"`, `\` or a line feed cannot break a scrape.
///
/// Names and meanings are a stable interface (README, "Metrics").
public final class HostMetrics: Sendable {
    /// The registry the host's series live in; libraries that use swift-metrics
    /// can be given a `PrometheusMetricsFactory` over it, to be exported beside them.
    public let registry: PrometheusCollectorRegistry
    private let scheduler: Scheduler
    private let series: Mutex<Series>
    private let started: Date

    /// - Parameters:
    ///   - version: the host's version, for `servicehost_build_info`.
    ///   - started: when the host started, for `process_start_time_seconds`.
    public init(scheduler: Scheduler, version: String, started: Date = Date(),
                registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.scheduler = scheduler
        self.registry = registry
        self.started = started
        series = Mutex(Series(registry: registry, version: version))
    }

    /// The `Content-Type` of ``exposition()``.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Reads every service and the process, and returns the text of a scrape.
    public func exposition() -> [UInt8] {
        let samples = scheduler.samples()
        let process = ProcessSample.current()
        return series.withLock { series in
            series.update(samples, process: process, started: started, registry: registry)
            var buffer: [UInt8] = []
            buffer.reserveCapacity(series.lastSize + series.lastSize / 8)
            registry.emit(into: &buffer)
            series.lastSize = buffer.count
            return buffer
        }
    }
}

/// The registry's series, and which belong to which service.
private struct Series {
    var services: [String: ServiceSeries] = [:]
    let states: [ServiceStatus.State: Gauge]
    let processCPU: Counter
    let processResident: Gauge
    let processVirtual: Gauge
    let processOpenDescriptors: Gauge
    let processMaxDescriptors: Gauge
    let processStartTime: Gauge
    /// The size of the last scrape, to reserve the next one's buffer at once.
    var lastSize = 0

    init(registry: PrometheusCollectorRegistry, version: String) {
        registry.makeGauge(descriptor: .named("servicehost_build_info", "Always 1; the version of the running host."), labels: [("version", version)]).set(Int64(1))
        states = Dictionary(uniqueKeysWithValues: ServiceStatus.State.allCases.map { state in
            (state, registry.makeGauge(descriptor: .named("servicehost_services", "Services in each state."), labels: [("state", state.rawValue)]))
        })
        processCPU = registry.makeCounter(descriptor: .named("process_cpu_seconds_total", "User and system CPU time of the host process, in seconds."))
        processResident = registry.makeGauge(descriptor: .named("process_resident_memory_bytes", "Resident memory of the host process, in bytes."))
        processVirtual = registry.makeGauge(descriptor: .named("process_virtual_memory_bytes", "Virtual memory of the host process, in bytes."))
        processOpenDescriptors = registry.makeGauge(descriptor: .named("process_open_fds", "Open file descriptors of the host process."))
        processMaxDescriptors = registry.makeGauge(descriptor: .named("process_max_fds", "The host process's limit on open file descriptors."))
        processStartTime = registry.makeGauge(descriptor: .named("process_start_time_seconds", "When the host process started, in seconds since the Unix epoch."))
    }

    mutating func update(_ samples: [ServiceSample], process: ProcessSample?, started: Date, registry: PrometheusCollectorRegistry) {
        var counts: [ServiceStatus.State: Int] = [:]
        var present = Set<String>()
        present.reserveCapacity(samples.count)
        for sample in samples {
            present.insert(sample.name)
            counts[sample.state, default: 0] += 1
            if services[sample.name] == nil {
                services[sample.name] = ServiceSeries(service: sample.name, registry: registry)
            }
            services[sample.name]?.update(sample)
        }
        for (name, gone) in services where !present.contains(name) {
            gone.unregister(from: registry)
            services[name] = nil
        }
        for (state, gauge) in states { gauge.set(Int64(counts[state] ?? 0)) }
        processStartTime.set(started.timeIntervalSince1970)
        if let process {
            processCPU.reset()
            processCPU.increment(by: process.cpuSeconds)
            processResident.set(process.residentBytes)
            processVirtual.set(process.virtualBytes)
            processOpenDescriptors.set(process.openDescriptors)
            processMaxDescriptors.set(process.maxDescriptors)
        }
    }
}

/// One service's series.
private struct ServiceSeries {
    let up: Gauge
    let state: [ServiceStatus.State: Gauge]
    let starts: Counter
    let restarts: [RestartCause: Counter]
    let reloads: [ReloadResult: Counter]
    let loops: Counter
    let startTime: Gauge

    init(service: String, registry: PrometheusCollectorRegistry) {
        let label = ("service", service)
        up = registry.makeGauge(descriptor: .named("servicehost_service_up", "1 while the service runs (state running), else 0."), labels: [label])
        state = Dictionary(uniqueKeysWithValues: ServiceStatus.State.allCases.map { state in
            (state, registry.makeGauge(descriptor: .named("servicehost_service_state", "1 for the state the service is in, 0 for the others."), labels: [label, ("state", state.rawValue)]))
        })
        starts = registry.makeCounter(descriptor: .named("servicehost_service_starts_total", "Successful starts of the service (svc_create returned 0)."), labels: [label])
        restarts = Dictionary(uniqueKeysWithValues: RestartCause.allCases.map { cause in
            (cause, registry.makeCounter(descriptor: .named("servicehost_service_restarts_total", "Restarts of the service, by reason."), labels: [label, ("reason", cause.rawValue)]))
        })
        reloads = Dictionary(uniqueKeysWithValues: ReloadResult.allCases.map { result in
            (result, registry.makeCounter(descriptor: .named("servicehost_plugin_reloads_total", "Hot reloads of the service's plugin file, by result."), labels: [label, ("result", result.rawValue)]))
        })
        loops = registry.makeCounter(descriptor: .named("servicehost_service_loops_total", "Turns of the service's loop (svc_loop calls that returned)."), labels: [label])
        startTime = registry.makeGauge(descriptor: .named("servicehost_service_start_time_seconds", "When the service's current or last run started, in seconds since the Unix epoch; 0 before its first start."), labels: [label])
    }

    func update(_ sample: ServiceSample) {
        up.set(Int64(sample.state == .running ? 1 : 0))
        for (state, gauge) in state { gauge.set(Int64(state == sample.state ? 1 : 0)) }
        Self.set(starts, to: sample.starts)
        for (cause, counter) in restarts { Self.set(counter, to: sample.restarts[cause] ?? 0) }
        for (result, counter) in reloads { Self.set(counter, to: sample.reloads[result] ?? 0) }
        loops.reset()
        loops.increment(by: Int64(clamping: sample.loops))
        startTime.set(sample.lastStarted?.timeIntervalSince1970 ?? 0)
    }

    /// A counter's value is the service's own count: set, not added to.
    private static func set(_ counter: Counter, to value: Int) {
        counter.reset()
        counter.increment(by: Int64(value))
    }

    func unregister(from registry: PrometheusCollectorRegistry) {
        registry.unregisterGauge(up)
        for gauge in state.values { registry.unregisterGauge(gauge) }
        registry.unregisterCounter(starts)
        for counter in restarts.values { registry.unregisterCounter(counter) }
        for counter in reloads.values { registry.unregisterCounter(counter) }
        registry.unregisterCounter(loops)
        registry.unregisterGauge(startTime)
    }
}

private extension MetricNameDescriptor {
    /// A whole metric name (already prefixed) and its `# HELP` text.
    static func named(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
