/// What a reload does, decided from the plugins directory and the services
/// that run from it: a pure value, so every case is tested without files,
/// threads or plugins. The ``Scheduler`` carries it out.
struct ReloadPlan: Equatable {
    /// A service that runs from the directory, as the plan needs to know it.
    struct Running: Equatable {
        let name: String
        let file: String
        let configuration: ServiceConfiguration
        /// Its file differs from the version in use (and was not refused already).
        let fileChanged: Bool
        let failed: Bool
        /// Stopped by an order (or never started): a reload leaves it stopped.
        let stoppedByOrder: Bool
        /// Its thread was abandoned inside the plugin: it cannot be restarted
        /// or replaced until the call returns.
        var hung = false
    }

    /// A plugin file found in the directory, with its sidecar read.
    struct Found: Equatable {
        let entry: PluginDirectory.Entry
        /// The configuration its sidecar gives, or why the sidecar cannot be used.
        let configuration: Result<ServiceConfiguration, PluginError>
    }

    enum Step: Equatable {
        /// A new plugin: add it and start it.
        case add(PluginDirectory.Entry, ServiceConfiguration)
        /// Its file is gone: stop it (dependents first) and remove it.
        case remove(String)
        /// Its sidecar changed: replace the service with one of the new values,
        /// started unless it was stopped by an order.
        case reconfigure(PluginDirectory.Entry, ServiceConfiguration, start: Bool)
        /// Its file changed: restart it on the new version (rolled back if refused).
        case restart(String)
        /// It gave up: one more start.
        case retry(String)
        /// Nothing to do.
        case keep(String)
        /// The file or sidecar cannot be used; what runs is left as it was.
        case refuse(ReloadReport.Refusal)
    }

    let steps: [Step]

    init(found: [Found], running: [Running], scanErrors: [PluginError]) {
        // A running service's own file that lost a name clash to a newer
        // file (libX.so running, X.so added) is still there: it stays.
        let runningFiles = Set(running.map(\.file))
        var steps: [Step] = scanErrors.filter { !runningFiles.contains($0.file) }.map { .refuse(.init(file: $0.file, reason: $0.reason)) }
        let foundFiles = Set(found.map(\.entry.file)).union(scanErrors.map(\.file).filter(runningFiles.contains))
        // Removals first (a service whose file is gone), so that the name it
        // frees can be taken by another file (libX.so replaced by X.so).
        var present: [Running] = []
        for service in running {
            if foundFiles.contains(service.file) {
                present.append(service)
            } else {
                steps.append(.remove(service.name))
            }
        }
        let byName = Dictionary(present.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for plugin in found {
            let configuration: ServiceConfiguration
            switch plugin.configuration {
            case .success(let read):
                configuration = read
            case .failure(let error):
                steps.append(.refuse(.init(file: error.file, reason: error.reason)))
                if let service = byName[plugin.entry.name] { steps.append(.keep(service.name)) }
                continue
            }
            guard let service = byName[plugin.entry.name] else {
                steps.append(.add(plugin.entry, configuration))
                continue
            }
            let changes = service.configuration != configuration || (service.fileChanged && !service.stoppedByOrder)
            if service.file != plugin.entry.file {
                // Another file now claims the name (libX.so beside X.so): the running one stays.
                steps.append(.refuse(.init(file: plugin.entry.file,
                                           reason: "service name '\(service.name)' is already used by \(service.file); this file is ignored")))
                steps.append(.keep(service.name))
            } else if changes, service.hung {
                steps.append(.refuse(.init(file: service.file,
                                           reason: "changed, but its previous run is still inside the plugin (hung); left as it is until that call returns")))
                steps.append(.keep(service.name))
            } else if service.configuration != configuration {
                steps.append(.reconfigure(plugin.entry, configuration, start: !service.stoppedByOrder))
            } else if service.fileChanged, !service.stoppedByOrder {
                steps.append(.restart(service.name))
            } else if service.failed {
                steps.append(.retry(service.name))
            } else {
                steps.append(.keep(service.name))
            }
        }
        self.steps = steps
    }

    /// The report of the plan as it stands, before anything is carried out.
    func report(dryRun: Bool) -> ReloadReport {
        var report = ReloadReport(dryRun: dryRun)
        for step in steps {
            switch step {
            case .add(let entry, _): report.added.append(entry.name)
            case .remove(let name): report.removed.append(name)
            case .reconfigure(let entry, _, _): report.changed.append(entry.name)
            case .restart(let name): report.changed.append(name)
            case .retry(let name): report.retried.append(name)
            case .keep(let name): report.unchanged.append(name)
            case .refuse(let refusal): report.refused.append(refusal)
            }
        }
        return report
    }
}
