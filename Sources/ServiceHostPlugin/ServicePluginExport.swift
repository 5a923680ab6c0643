import CServiceHostABI

/// What `#servicePlugin` expands to calls: the C entry points' work, for a
/// ``ServicePlugin`` type. Public only for the macro's expansion; not an API
/// to call by hand.
public enum ServicePluginExport {
    public typealias HostPointer = UnsafePointer<svc_host>
    public typealias InstanceSlot = UnsafeMutablePointer<UnsafeMutableRawPointer?>
    public typealias Instance = UnsafeMutableRawPointer
    public typealias VersionPointer = UnsafePointer<CChar>

    /// One created plugin and its context, handed to the host as `ctx`.
    private final class Created<Plugin: ServicePlugin> {
        var plugin: Plugin
        let context: PluginContext

        init(plugin: Plugin, context: PluginContext) {
            self.plugin = plugin
            self.context = context
        }
    }

    public static func abiVersion() -> UInt32 { UInt32(SVC_ABI_VERSION) }

    public static func create<Plugin: ServicePlugin>(_ type: Plugin.Type, host: HostPointer?, into slot: InstanceSlot?) -> Int32 {
        guard let host, let slot else { return -22 }
        let context = PluginContext(host: HostCallbacks(host))
        do {
            let plugin = try Plugin(context: context)
            slot.pointee = Unmanaged.passRetained(Created(plugin: plugin, context: context)).toOpaque()
            return 0
        } catch {
            return failed(error, in: "svc_create", context: context)
        }
    }

    public static func loop<Plugin: ServicePlugin>(_ type: Plugin.Type, _ instance: Instance?) -> Int32 {
        guard let instance else { return -22 }
        let created = Unmanaged<Created<Plugin>>.fromOpaque(instance).takeUnretainedValue()
        do {
            switch try created.plugin.loop(context: created.context) {
            case .continue: return Int32(SVC_CONTINUE)
            case .done: return Int32(SVC_DONE)
            }
        } catch {
            return failed(error, in: "svc_loop", context: created.context)
        }
    }

    public static func stop<Plugin: ServicePlugin>(_ type: Plugin.Type, _ instance: Instance?) {
        guard let instance else { return }
        let created = Unmanaged<Created<Plugin>>.fromOpaque(instance).takeRetainedValue()
        created.plugin.stop(context: created.context)
    }

    /// The version string: a string literal, whose storage is static and NUL-terminated.
    public static func version(_ version: StaticString?) -> VersionPointer? {
        guard let version, version.hasPointerRepresentation else { return nil }
        return UnsafeRawPointer(version.utf8Start).assumingMemoryBound(to: CChar.self)
    }

    /// Logs a thrown error under the service's name and returns its code.
    private static func failed(_ error: any Error, in step: String, context: PluginContext) -> Int32 {
        context.logger.error("\(step) failed: \(error)")
        // Clamped here too: a code set to 0 or more after construction would read as success.
        let code = (error as? PluginError)?.code ?? -1
        return code < 0 ? code : -1
    }
}
