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
}
