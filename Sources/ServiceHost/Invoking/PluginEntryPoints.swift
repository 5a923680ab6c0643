import CLibFFI
import CServiceHostABI

/// The entry points of one loaded plugin image, each called through libffi.
///
/// The call interfaces are prepared once per image, when it is loaded; a call
/// allocates nothing. All methods must be called from one thread at a time
/// per service, as the ABI promises plugins.
final class PluginEntryPoints: @unchecked Sendable {
    typealias CFunction = @convention(c) () -> Void

    private let abiVersionFunction: CFunction
    private let createFunction: CFunction
    private let loopFunction: CFunction
    private let stopFunction: CFunction
    private let pluginVersionFunction: CFunction?

    private let uint32Void = CallInterface(returning: .uint32, arguments: [])
    private let pointerVoid = CallInterface(returning: .pointer, arguments: [])
    private let createInterface = CallInterface(returning: .sint32, arguments: [.pointer, .pointer])
    private let loopInterface = CallInterface(returning: .sint32, arguments: [.pointer])
    private let stopInterface = CallInterface(returning: .void, arguments: [.pointer])

    /// The names the ABI requires, in the order they are looked up.
    static let requiredSymbols = ["svc_abi_version", "svc_create", "svc_loop", "svc_stop"]
    static let optionalVersionSymbol = "svc_plugin_version"

    /// - Parameter resolve: looks a symbol up in the image; `nil` when absent.
    /// - Returns: `nil` and the first missing required symbol when one is absent.
    init(resolve: (String) -> UnsafeMutableRawPointer?) throws(MissingSymbol) {
        func required(_ name: String) throws(MissingSymbol) -> CFunction {
            guard let address = resolve(name) else { throw MissingSymbol(name: name) }
            return unsafeBitCast(address, to: CFunction.self)
        }
        abiVersionFunction = try required("svc_abi_version")
        createFunction = try required("svc_create")
        loopFunction = try required("svc_loop")
        stopFunction = try required("svc_stop")
        pluginVersionFunction = resolve(Self.optionalVersionSymbol).map { unsafeBitCast($0, to: CFunction.self) }
    }

    struct MissingSymbol: Error { let name: String }

    func abiVersion() -> UInt32 {
        var result: ffi_arg = 0
        ffi_call(uint32Void.cif, abiVersionFunction, &result, nil)
        return UInt32(truncatingIfNeeded: result)
    }

    /// The plugin's version string, copied; `nil` when the plugin has none.
    func pluginVersion() -> String? {
        guard let pluginVersionFunction else { return nil }
        var result: UnsafePointer<CChar>? = nil
        ffi_call(pointerVoid.cif, pluginVersionFunction, &result, nil)
        return result.map { String(cString: $0) }
    }

    /// Calls `svc_create(host, ctx)`; `arguments` is the instance's preallocated argument block.
    func create(_ arguments: CallArguments) -> Int32 {
        ffi_call(createInterface.cif, createFunction, arguments.result, arguments.createArguments)
        return Int32(truncatingIfNeeded: arguments.result.pointee)
    }

    /// The `svc_loop(ctx)` call of one instance, with nothing
    /// reference-counted in it: the hot path (see ``LoopCall``).
    func loopCall(_ arguments: CallArguments) -> LoopCall {
        LoopCall(cif: loopInterface.cif, function: loopFunction, arguments: arguments.contextArguments, result: arguments.result)
    }

    func stop(_ arguments: CallArguments) {
        ffi_call(stopInterface.cif, stopFunction, arguments.result, arguments.contextArguments)
    }
}

/// Everything one `svc_loop` call needs, as plain pointers: copying or
/// calling it touches no reference count and takes no lock. Valid while the
/// ``PluginInstance`` it came from lives.
struct LoopCall {
    fileprivate let cif: UnsafeMutablePointer<ffi_cif>
    fileprivate let function: PluginEntryPoints.CFunction
    fileprivate let arguments: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    fileprivate let result: UnsafeMutablePointer<ffi_arg>

    @inline(__always)
    func callAsFunction() -> Int32 {
        ffi_call(cif, function, result, arguments)
        return Int32(truncatingIfNeeded: result.pointee)
    }
}

/// The memory libffi reads arguments from and writes results to, for one
/// service instance: allocated once when the instance is made, so that no
/// call into the plugin allocates.
final class CallArguments: @unchecked Sendable {
    /// Where `svc_create` stores the service's context; `svc_loop` and `svc_stop` read it.
    let context: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Holds the address of `context`, the `void **ctx` argument of `svc_create`.
    private let contextAddress: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// Holds the `const svc_host *` argument of `svc_create`.
    private let hostAddress: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// libffi's argument vector for `svc_create`: pointers to hostAddress and contextAddress.
    let createArguments: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// libffi's argument vector for `svc_loop` and `svc_stop`: a pointer to `context`.
    let contextArguments: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    /// libffi widens integral results to a full register (`ffi_arg`).
    let result: UnsafeMutablePointer<ffi_arg>

    init(host: UnsafePointer<svc_host>) {
        context = .allocate(capacity: 1)
        context.initialize(to: nil)
        contextAddress = .allocate(capacity: 1)
        contextAddress.initialize(to: UnsafeMutableRawPointer(context))
        hostAddress = .allocate(capacity: 1)
        hostAddress.initialize(to: UnsafeMutableRawPointer(mutating: host))
        createArguments = .allocate(capacity: 2)
        createArguments.initialize(to: UnsafeMutableRawPointer(hostAddress))
        (createArguments + 1).initialize(to: UnsafeMutableRawPointer(contextAddress))
        contextArguments = .allocate(capacity: 1)
        contextArguments.initialize(to: UnsafeMutableRawPointer(context))
        result = .allocate(capacity: 1)
        result.initialize(to: 0)
    }

    deinit {
        context.deallocate()
        contextAddress.deallocate()
        hostAddress.deallocate()
        createArguments.deallocate()
        contextArguments.deallocate()
        result.deallocate()
    }
}
