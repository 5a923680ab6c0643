/// Checks plugin files the way the host loads them (file, ELF headers,
/// `dlopen`, required symbols, ABI version) without creating a service.
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

    /// - Throws: ``PluginError`` when the private runtime directory cannot be made.
    public init(runtimeParent: String? = nil, limits: Limits = .default) throws {
        loader = PluginLoader(runtimeDirectory: try RuntimeDirectory(parent: runtimeParent),
                              maxPluginSize: limits.maxPluginSize)
    }

    public func check(file: String) -> Result<Report, PluginError> {
        do {
            let image = try loader.load(file: file)
            return .success(Report(file: file, version: image.version, containsSwiftCode: image.containsSwiftCode))
        } catch {
            return .failure(error)
        }
    }
}
