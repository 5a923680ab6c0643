// Greeter -- a service written in Swift: the entry points are @_cdecl
// functions with the C signatures of servicehost.h (imported as the module
// CServiceHostABI), and the service's state is a Swift object passed through
// ctx. Every loop it logs "Hello, <who>!", with `who` from Greeter.toml.

import CServiceHostABI

/// The service's state, owned through ctx from svc_create to svc_stop.
final class Greeter {
    let host: UnsafePointer<svc_host>
    let greeting: String

    init(host: UnsafePointer<svc_host>) {
        self.host = host
        let who = host.pointee.config?("who").map { String(cString: $0) } ?? "world"
        greeting = "Hello, \(who)!"
    }

    func log(_ level: Int32, _ message: String) {
        message.withCString { host.pointee.log?(level, $0) }
    }
}

private let version: StaticString = "1.0.0"

@_cdecl("svc_abi_version")
public func svc_abi_version() -> UInt32 {
    UInt32(SVC_ABI_VERSION)
}

@_cdecl("svc_plugin_version")
public func svc_plugin_version() -> UnsafePointer<CChar>? {
    // The literal's bytes are static data of this image, as the ABI requires.
    UnsafeRawPointer(version.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("svc_create")
public func svc_create(_ host: UnsafePointer<svc_host>?, _ ctx: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    guard let host, let ctx else { return -22 }
    ctx.pointee = Unmanaged.passRetained(Greeter(host: host)).toOpaque()
    return 0
}

@_cdecl("svc_loop")
public func svc_loop(_ ctx: UnsafeMutableRawPointer?) -> Int32 {
    guard let ctx else { return -22 }
    let greeter = Unmanaged<Greeter>.fromOpaque(ctx).takeUnretainedValue()
    greeter.log(Int32(SVC_LOG_INFO), greeter.greeting)
    return Int32(SVC_CONTINUE)
}

@_cdecl("svc_stop")
public func svc_stop(_ ctx: UnsafeMutableRawPointer?) {
    guard let ctx else { return }
    Unmanaged<Greeter>.fromOpaque(ctx).release()
}
