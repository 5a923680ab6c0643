/// Checks plugin files the way the host loads them (file, ELF headers,
/// `dlopen`, required symbols, ABI version) without creating a service.
///
/// The checking process never loads a plugin itself: `dlopen` and the ABI
/// checks happen in a throwaway scan process (see ``PluginScanner``), so a
/// plugin whose constructor crashes, exits or hangs is reported, not obeyed.
public struct PluginChecker: Sendable {
    /// What a check found in a loadable plugin.
    public struct Report: Sendable {
        public let file: String
        /// What `svc_plugin_version` returned, if exported.
        public let version: String?
        /// Whether the image contains Swift code (and so is never unloaded).
        public let containsSwiftCode: Bool
    }

    private let loader: PluginLoader
    private let launcher: WorkerLauncher

    /// - Parameter executable: the `servicehost` executable that scan
    ///   processes are forked from; by default this process's own image when
    ///   this process is `servicehost` (any other program, a test runner say,
    ///   would be started again instead of a fork server).
    /// - Throws: ``PluginError`` when the private runtime directory cannot be
    ///   made, or when no executable is given and this process is not `servicehost`.
    public init(runtimeParent: String? = nil, limits: Limits = .default, executable: String? = nil) throws {
        guard let executable = executable ?? Scheduler.Configuration.currentExecutableIfServiceHost() else {
            throw PluginError(.loadFailed, file: "servicehost",
                              reason: "checking plugins needs the servicehost executable to fork scan processes from (PluginChecker(executable:))")
        }
        launcher = WorkerLauncher(executable: executable)
        loader = PluginLoader(runtimeDirectory: try RuntimeDirectory(parent: runtimeParent),
                              maxPluginSize: limits.maxPluginSize, scanner: PluginScanner(launcher: launcher))
    }

    /// - Parameter timeout: how long loading may take (the sidecar's `start_timeout_ms`);
    ///   by default ``PluginScanner/defaultTimeout``.
    public func check(file: String, timeout: Duration? = nil) -> Result<Report, PluginError> {
        do {
            let staged = try loader.stage(file: file, scanTimeout: timeout)
            var version: String? = nil
            if case .loads(let reported)? = loader.scanner?.verdict(for: staged, timeout: timeout) { version = reported }
            return .success(Report(file: file, version: version, containsSwiftCode: staged.containsSwiftCode))
        } catch {
            return .failure(error)
        }
    }

    /// Ends the scan processes' fork server.
    public func finish() {
        launcher.shutdown()
        loader.runtimeDirectory.remove()
    }
}

extension PluginChecker {
    /// One line of a check's outcome.
    public struct Finding: Sendable, Equatable {
        public let file: String
        /// Whether `run` would refuse what this finding is about.
        public let refused: Bool
        public let message: String
    }

    /// Checks a plugin file and explains a missing entry point (a C++-mangled
    /// or hidden symbol) from the image's symbol tables.
    public func finding(for file: String, timeout: Duration? = nil) -> Finding {
        switch check(file: file, timeout: timeout) {
        case .success(let report):
            return Finding(file: file, refused: false,
                           message: "OK, version \(report.version ?? "(none)")\(report.containsSwiftCode ? ", Swift image" : "")")
        case .failure(let error):
            var reason = error.reason
            if error.code == .missingSymbol, let missing = Self.missingName(in: reason),
               let (bytes, _) = try? PluginLoader.read(file: file),
               let hint = bytes.withUnsafeBytes({ ELFSymbols($0).hint(forMissing: missing) }) {
                reason += "; \(hint)"
            }
            return Finding(file: file, refused: true, message: "FAILED [\(error.code)]: \(reason)")
        }
    }

    /// Validates a plugins directory as `run` would: the directory's safety,
    /// duplicate names, each sidecar, each plugin (through the scanner), and
    /// the `requires` graph (unknown names, cycles).
    public func check(directory: String) -> [Finding] {
        func refused(_ error: PluginError) -> Finding {
            Finding(file: error.file, refused: true, message: "FAILED [\(error.code)]: \(error.reason)")
        }
        var findings: [Finding] = []
        do {
            try FileSafety.check(directory, as: .directory)
        } catch {
            return [refused(error)]
        }
        let entries: [PluginDirectory.Entry]
        do {
            let scanned = try PluginDirectory(path: directory).scan()
            entries = scanned.entries
            findings += scanned.errors.map(refused)
        } catch {
            return [refused(error)]
        }
        // The same graph the manager asks when it starts services.
        var graph = DependencyGraph()
        for entry in entries {
            var configuration = ServiceConfiguration()
            if let sidecar = entry.sidecar {
                do {
                    try FileSafety.check(sidecar, as: .sidecar)
                    configuration = try SidecarFile.load(path: sidecar)
                } catch {
                    findings.append(refused(error))
                    graph.add(entry.name, requires: [])
                    continue
                }
            }
            graph.add(entry.name, requires: configuration.requires)
            findings.append(finding(for: entry.file, timeout: configuration.startTimeout))
        }
        let file = { (name: String) in entries.first { $0.name == name }?.file ?? name }
        let names = graph.order.sorted()
        for service in names {
            for missing in graph.unknownRequirements(of: service) {
                findings.append(Finding(file: file(service), refused: true,
                                        message: "FAILED [invalid configuration]: requires '\(missing)', which no plugin in \(directory) provides"))
            }
        }
        // Each cycle once, named from its smallest member.
        for service in names {
            guard let cycle = graph.cycle(through: service), cycle.dropLast().allSatisfy({ service <= $0 }) else { continue }
            findings.append(Finding(file: file(service), refused: true,
                                    message: "FAILED [invalid configuration]: requires cycle \(cycle.joined(separator: " -> "))"))
        }
        return findings
    }

    private static func missingName(in reason: String) -> String? {
        guard let start = reason.firstIndex(of: "'"), let end = reason[reason.index(after: start)...].firstIndex(of: "'") else { return nil }
        return String(reason[reason.index(after: start)..<end])
    }
}
