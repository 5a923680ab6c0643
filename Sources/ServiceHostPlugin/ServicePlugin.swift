/// A service written in Swift: a type, not pointer glue. The host creates
/// it (``init(context:)``) on every start, calls ``loop(context:)`` until it
/// returns ``LoopResult/done``, throws, or a stop comes, and then
/// ``stop(context:)`` once. All three run on the service's own thread, one
/// after another, so the type needs no locking of its own.
///
/// Export it with one line at file scope:
///
/// ```swift
/// #servicePlugin(Greeter.self, version: "1.0.0")
/// ```
///
/// A thrown error fails the step: it is logged with its description under
/// the service's name, and the host records a negative code
/// (``PluginError/code`` for a ``PluginError``, -1 otherwise) and applies the
/// service's restart policy.
public protocol ServicePlugin {
    /// Creates the service; throwing fails the start (``stop(context:)`` is then not called).
    init(context: PluginContext) throws
    /// Does one unit of work; may block (watch ``PluginContext/stopDescriptor``).
    mutating func loop(context: PluginContext) throws -> LoopResult
    /// Releases what ``init(context:)`` made. By default nothing.
    mutating func stop(context: PluginContext)
}

extension ServicePlugin {
    public mutating func stop(context: PluginContext) {}
}

/// What one loop turn asks for next.
public enum LoopResult: Sendable, Equatable {
    /// Call the loop again after the service's `interval_ms`.
    case `continue`
    /// The service finished: it stops cleanly (`SVC_DONE`).
    case done
}

/// A failure with the code the host records (negative; a positive or zero
/// code is recorded as -1).
public struct PluginError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String

    public init(code: Int32 = -1, _ message: String) {
        self.code = code < 0 ? code : -1
        self.message = message
    }

    public var description: String { message }
}

/// Exports a ``ServicePlugin`` type as the plugin's C entry points
/// (`svc_abi_version`, `svc_create`, `svc_loop`, `svc_stop`,
/// `svc_plugin_version`). Write it once, at file scope; `version` is shown
/// in the host's logs ("reloaded …: 1.0.0 -> 1.1.0").
@freestanding(declaration, names: named(__servicePluginABIVersion), named(__servicePluginCreate),
              named(__servicePluginLoop), named(__servicePluginStop), named(__servicePluginVersion))
public macro servicePlugin<Plugin: ServicePlugin>(_ type: Plugin.Type, version: StaticString? = nil) =
    #externalMacro(module: "ServiceHostPluginMacros", type: "ServicePluginMacro")
