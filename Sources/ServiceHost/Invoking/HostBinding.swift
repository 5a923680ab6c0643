import CFFIShims
import CLibFFI
import CServiceHostABI
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a plugin's `svc_host` callbacks reach on the host side.
protocol HostCallbackTarget: AnyObject, Sendable {
    func pluginLog(level: Int32, message: String)
    func pluginRequestedStop()
    /// Whether the run should end (`svc_host.stop_requested`); `handingOver`:
    /// whether the binding asking is the one an overlapping reload replaces.
    func pluginAsksWhetherToStop(handingOver: Bool) -> Bool
    /// The descriptor readable once the run on binding slot `slot` should
    /// end (`svc_host.stop_descriptor`; see ``HostBinding/slot``).
    func pluginAsksForStopDescriptor(slot: Int) -> Int32
    /// `svc_host.state_save` in `run` (the binding's, see ``HostBinding/run``): 0 or a negative error number.
    func pluginSavesState(_ bytes: UnsafeRawPointer?, count: Int, in run: KeptState.Run?) -> Int32
    /// `svc_host.state_load`: what was kept when `run` began.
    func pluginLoadsState(in run: KeptState.Run?) -> UnsafeRawBufferPointer?
    /// `svc_host.fd_keep`: 0 or a negative error number; `name` is `nil` when not UTF-8.
    func pluginKeepsDescriptor(_ descriptor: Int32, named name: String?, in run: KeptState.Run?) -> Int32
    /// `svc_host.fd_load`: a new descriptor or a negative error number.
    func pluginLoadsDescriptor(named name: String?, in run: KeptState.Run?) -> Int32
}

extension HostCallbackTarget {
    // Reached only through a binding that offers kept state (see HostBinding.init).
    func pluginSavesState(_ bytes: UnsafeRawPointer?, count: Int, in run: KeptState.Run?) -> Int32 { -ENOSYS }
    func pluginLoadsState(in run: KeptState.Run?) -> UnsafeRawBufferPointer? { nil }
    func pluginKeepsDescriptor(_ descriptor: Int32, named name: String?, in run: KeptState.Run?) -> Int32 { -ENOSYS }
    func pluginLoadsDescriptor(named name: String?, in run: KeptState.Run?) -> Int32 { -ENOSYS }
}

extension HostCallbackTarget where Self: BaseService {
    func pluginAsksWhetherToStop(handingOver: Bool) -> Bool {
        switch stopSignal.request {
        case .none: false
        // A new version created beside the old one is not the one to stop.
        case .handover: handingOver
        case .requested, .ordered: true
        }
    }
    func pluginAsksForStopDescriptor(slot: Int) -> Int32 { stopSignal.descriptor(slot: slot) }
}

/// The `svc_host` handed to one service's `svc_create`, with its callbacks.
///
/// The ABI's callbacks take no context argument, so each service gets its own
/// function pointers: libffi closures whose user data is this binding. The
/// struct, the closures and every string reachable from them live as long as
/// the binding, which outlives every instance created with it.
final class HostBinding: @unchecked Sendable {
    let host: UnsafeMutablePointer<svc_host>
    private weak var target: (any HostCallbackTarget)?
    private let serviceName: UnsafeMutablePointer<CChar>
    /// The `[config]` values as C strings, made once: `config` hands out
    /// pointers into them, which must stay valid as long as the binding.
    private let settings: [String: UnsafeMutablePointer<CChar>]
    private var closures: [UnsafeMutableRawPointer] = []
    /// The run whose calls this binding serves, passed with every kept-state
    /// callback: set before its `svc_create`, kept until the binding serves
    /// another (what `state_load` returned stays valid that long).
    let run = Mutex<KeptState.Run?>(nil)
    /// Set while an overlapping reload replaces the run on this binding.
    let handingOver = Atomic<Bool>(false)
    /// Which of its service's bindings this is (0, or 1 for the second of
    /// `reload = "overlap"`): each has its own stop descriptor.
    let slot: Int

    /// Why a binding could not be made: libffi found no executable memory
    /// for a closure (it maps a page, which `vm.max_map_count` or
    /// `RLIMIT_AS` can refuse).
    static let allocationFailure = "cannot make its svc_host callbacks: libffi could not map executable memory for them (vm.max_map_count or RLIMIT_AS reached?)"

    /// Fails, for this one service, when libffi has no executable memory left.
    /// - Parameter offersState: whether `state_save`, `state_load`, `fd_keep` and `fd_load` are set
    ///   (thread isolation); without, they are NULL and `SVC_HOST_HAS` says so.
    init?(serviceName name: String, settings: [String: String], target: any HostCallbackTarget, offersState: Bool = false,
          slot: Int = 0) {
        self.target = target
        self.slot = slot
        serviceName = strdup(name)
        self.settings = settings.mapValues { strdup($0) }
        host = .allocate(capacity: 1)
        host.initialize(to: svc_host(
            abi_version: UInt32(SVC_ABI_VERSION),
            struct_size: UInt32(MemoryLayout<svc_host>.size),
            service_name: UnsafePointer(serviceName),
            log: nil, config: nil, request_stop: nil, stop_requested: nil, stop_descriptor: nil,
            state_save: nil, state_load: nil, fd_keep: nil, fd_load: nil))

        let userData = Unmanaged.passUnretained(self).toOpaque()
        let signatures = CallbackSignatures.shared
        guard let log = makeClosure(signatures.log, userData: userData, handler: { _, _, arguments, userData in
                guard let arguments, let userData else { return }
                let binding = Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue()
                let level = arguments[0]!.load(as: Int32.self)
                let message = arguments[1]!.load(as: UnsafePointer<CChar>?.self)
                binding.target?.pluginLog(level: level, message: message.map { String(cString: $0) } ?? "")
            }),
            let config = makeClosure(signatures.config, userData: userData, handler: { _, result, arguments, userData in
                guard let result, let arguments, let userData else { return }
                let binding = Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue()
                let key = arguments[0]!.load(as: UnsafePointer<CChar>?.self)
                let value = key.flatMap { binding.settings[String(cString: $0)] }
                result.storeBytes(of: UnsafePointer(value), as: UnsafePointer<CChar>?.self)
            }),
            let requestStop = makeClosure(signatures.requestStop, userData: userData, handler: { _, _, _, userData in
                guard let userData else { return }
                Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue().target?.pluginRequestedStop()
            }),
            let stopRequested = makeClosure(signatures.stopRequested, userData: userData, handler: { _, result, _, userData in
                guard let result, let userData else { return }
                let binding = Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue()
                let stop = binding.target?.pluginAsksWhetherToStop(handingOver: binding.handingOver.load(ordering: .acquiring)) ?? true
                // libffi widens an integer result to a full register (ffi_arg).
                result.storeBytes(of: ffi_arg(stop ? 1 : 0), as: ffi_arg.self)
            }),
            let stopDescriptor = makeClosure(signatures.stopDescriptor, userData: userData, handler: { _, result, _, userData in
                guard let result, let userData else { return }
                let binding = Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue()
                let descriptor = binding.target?.pluginAsksForStopDescriptor(slot: binding.slot) ?? -1
                result.storeBytes(of: ffi_sarg(descriptor), as: ffi_sarg.self)
            })
        else {
            // deinit frees the closures made so far.
            return nil
        }
        host.pointee.log = unsafeBitCast(log, to: (@convention(c) (Int32, UnsafePointer<CChar>?) -> Void).self)
        host.pointee.config = unsafeBitCast(config, to: (@convention(c) (UnsafePointer<CChar>?) -> UnsafePointer<CChar>?).self)
        host.pointee.request_stop = unsafeBitCast(requestStop, to: (@convention(c) () -> Void).self)
        host.pointee.stop_requested = unsafeBitCast(stopRequested, to: (@convention(c) () -> Int32).self)
        host.pointee.stop_descriptor = unsafeBitCast(stopDescriptor, to: (@convention(c) () -> Int32).self)
        guard offersState else { return }
        guard let stateSave = makeClosure(signatures.stateSave, userData: userData, handler: { _, result, arguments, userData in
                guard let result, let arguments, let userData else { return }
                let bytes = arguments[0]!.load(as: UnsafeRawPointer?.self)
                let count = arguments[1]!.load(as: Int.self)
                let binding = Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue()
                let code = binding.target?.pluginSavesState(bytes, count: count, in: binding.run.withLock { $0 }) ?? -ENOSYS
                result.storeBytes(of: ffi_sarg(code), as: ffi_sarg.self)
            }),
            let stateLoad = makeClosure(signatures.stateLoad, userData: userData, handler: { _, result, arguments, userData in
                guard let result, let arguments, let userData else { return }
                let size = arguments[0]!.load(as: UnsafeMutablePointer<Int>?.self)
                let binding = Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue()
                let read = binding.target?.pluginLoadsState(in: binding.run.withLock { $0 })
                size?.pointee = read?.count ?? 0
                result.storeBytes(of: read.flatMap { $0.count > 0 ? $0.baseAddress : nil }, as: UnsafeRawPointer?.self)
            }),
            let fdKeep = makeClosure(signatures.fdKeep, userData: userData, handler: { _, result, arguments, userData in
                guard let result, let arguments, let userData else { return }
                let binding = Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue()
                let name = arguments[0]!.load(as: UnsafePointer<CChar>?.self).flatMap { String(validatingCString: $0) }
                let descriptor = arguments[1]!.load(as: Int32.self)
                let code = binding.target?.pluginKeepsDescriptor(descriptor, named: name, in: binding.run.withLock { $0 }) ?? -ENOSYS
                result.storeBytes(of: ffi_sarg(code), as: ffi_sarg.self)
            }),
            let fdLoad = makeClosure(signatures.fdLoad, userData: userData, handler: { _, result, arguments, userData in
                guard let result, let arguments, let userData else { return }
                let binding = Unmanaged<HostBinding>.fromOpaque(userData).takeUnretainedValue()
                let name = arguments[0]!.load(as: UnsafePointer<CChar>?.self).flatMap { String(validatingCString: $0) }
                let code = binding.target?.pluginLoadsDescriptor(named: name, in: binding.run.withLock { $0 }) ?? -ENOSYS
                result.storeBytes(of: ffi_sarg(code), as: ffi_sarg.self)
            })
        else {
            return nil
        }
        host.pointee.state_save = unsafeBitCast(stateSave, to: (@convention(c) (UnsafeRawPointer?, Int) -> Int32).self)
        host.pointee.state_load = unsafeBitCast(stateLoad, to: (@convention(c) (UnsafeMutablePointer<Int>?) -> UnsafeRawPointer?).self)
        host.pointee.fd_keep = unsafeBitCast(fdKeep, to: (@convention(c) (UnsafePointer<CChar>?, Int32) -> Int32).self)
        host.pointee.fd_load = unsafeBitCast(fdLoad, to: (@convention(c) (UnsafePointer<CChar>?) -> Int32).self)
    }

    private typealias Handler = @convention(c) (
        UnsafeMutablePointer<ffi_cif>?, UnsafeMutableRawPointer?,
        UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafeMutableRawPointer?
    ) -> Void

    /// Tests make closure allocation fail here, as an exhausted address space would.
    @TaskLocal static var closuresFail = false

    /// Makes a libffi closure and returns its executable address, or `nil`
    /// when libffi has no executable memory left.
    private func makeClosure(_ signature: CallInterface, userData: UnsafeMutableRawPointer, handler: Handler) -> UnsafeMutableRawPointer? {
        guard !Self.closuresFail else { return nil }
        var code: UnsafeMutableRawPointer? = nil
        guard let closure = cffi_closure_alloc(&code) else { return nil }
        guard let code else {
            ffi_closure_free(closure)
            return nil
        }
        let status = ffi_prep_closure_loc(closure.assumingMemoryBound(to: ffi_closure.self), signature.cif, handler, userData, code)
        precondition(status == FFI_OK, "ffi_prep_closure_loc failed with status \(status)")
        closures.append(closure)
        return code
    }

    deinit {
        for closure in closures { ffi_closure_free(closure) }
        host.deinitialize(count: 1)
        host.deallocate()
        free(serviceName)
        for value in settings.values { free(value) }
    }
}

/// The call interfaces of the host callbacks, shared by every binding.
private final class CallbackSignatures: Sendable {
    static let shared = CallbackSignatures()
    /// `void log(int32_t level, const char *message)`
    let log = CallInterface(returning: .void, arguments: [.sint32, .pointer])
    /// `const char *config(const char *key)`
    let config = CallInterface(returning: .pointer, arguments: [.pointer])
    /// `void request_stop(void)`
    let requestStop = CallInterface(returning: .void, arguments: [])
    /// `int32_t stop_requested(void)`
    let stopRequested = CallInterface(returning: .sint32, arguments: [])
    /// `int32_t stop_descriptor(void)`
    let stopDescriptor = CallInterface(returning: .sint32, arguments: [])
    /// `int32_t state_save(const void *bytes, size_t size)`
    let stateSave = CallInterface(returning: .sint32, arguments: [.pointer, .size])
    /// `const void *state_load(size_t *size)`
    let stateLoad = CallInterface(returning: .pointer, arguments: [.pointer])
    /// `int32_t fd_keep(const char *name, int32_t fd)`
    let fdKeep = CallInterface(returning: .sint32, arguments: [.pointer, .sint32])
    /// `int32_t fd_load(const char *name)`
    let fdLoad = CallInterface(returning: .sint32, arguments: [.pointer])
}
