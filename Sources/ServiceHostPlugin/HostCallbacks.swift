import CServiceHostABI

/// The `svc_host` a plugin was created with, behind a safe API: the only
/// place (with ``ServicePluginExport``) where the SDK touches pointers.
/// The host keeps the struct and its strings valid until `svc_stop` returns,
/// which is as long as a ``PluginContext`` may be used.
final class HostCallbacks: @unchecked Sendable {
    private let host: UnsafePointer<svc_host>
    let serviceName: String

    init(_ host: UnsafePointer<svc_host>) {
        self.host = host
        serviceName = host.pointee.service_name.map { String(cString: $0) } ?? ""
    }

    func log(level: Int32, _ message: String) {
        guard let log = host.pointee.log else { return }
        message.withCString { log(level, $0) }
    }

    func config(_ key: String) -> String? {
        guard let config = host.pointee.config else { return nil }
        return key.withCString { config($0) }.map { String(cString: $0) }
    }

    func requestStop() {
        host.pointee.request_stop?()
    }

    /// Whether the running host has the member at `offset` of `size` bytes
    /// (members appended to ABI 1 later: `struct_size` says).
    private func has(_ keyPath: KeyPath<svc_host, some Any>) -> Bool {
        guard let offset = MemoryLayout<svc_host>.offset(of: keyPath) else { return false }
        return Int(host.pointee.struct_size) >= offset + MemoryLayout<UnsafeRawPointer>.size
    }

    func stopRequested() -> Bool {
        guard has(\svc_host.stop_requested), let stopRequested = host.pointee.stop_requested else { return false }
        return stopRequested() != 0
    }

    func stopDescriptor() -> Int32? {
        guard has(\svc_host.stop_descriptor), let stopDescriptor = host.pointee.stop_descriptor else { return nil }
        let descriptor = stopDescriptor()
        return descriptor >= 0 ? descriptor : nil
    }

    /// `state_load`: a copy of what was kept when this run began; `nil` when
    /// nothing was, or on a host without kept state.
    func loadState() -> [UInt8]? {
        guard has(\svc_host.state_load), let stateLoad = host.pointee.state_load else { return nil }
        var size = 0
        guard let bytes = stateLoad(&size), size > 0 else { return nil }
        return Array(UnsafeRawBufferPointer(start: bytes, count: size))
    }

    /// `state_save`: 0 or a negative error number (-ENOSYS on a host without it).
    func saveState(_ bytes: UnsafeRawBufferPointer) -> Int32 {
        guard has(\svc_host.state_save), let stateSave = host.pointee.state_save else { return -38 }
        return stateSave(bytes.baseAddress, bytes.count)
    }

    /// `fd_keep`: 0 or a negative error number (-ENOSYS on a host without it).
    func keepDescriptor(_ descriptor: Int32, named name: String) -> Int32 {
        guard has(\svc_host.fd_keep), let fdKeep = host.pointee.fd_keep else { return -38 }
        return name.withCString { fdKeep($0, descriptor) }
    }

    /// `fd_load`: a new descriptor, or a negative error number (-ENOSYS on a host without it).
    func loadDescriptor(named name: String) -> Int32 {
        guard has(\svc_host.fd_load), let fdLoad = host.pointee.fd_load else { return -38 }
        return name.withCString { fdLoad($0) }
    }
}
