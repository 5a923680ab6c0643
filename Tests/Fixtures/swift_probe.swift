// swift_probe.swift -- a plugin written in Swift, for the host's tests of
// Swift images (which the host never dlcloses) and of their hot reload.
//
// Build: swiftc -emit-library -parse-as-library -module-name M -I include
//        [-D PROBE_V2] -o out.so Tests/Fixtures/swift_probe.swift
//
// Behaviour:
//   - version "1.0.0", or "2.0.0" when compiled with -D PROBE_V2;
//   - svc_create logs at SVC_LOG_INFO "create name=<service_name> version=<v>",
//     keeps its state in a Swift class instance (the ctx), and checks a dynamic
//     protocol cast through the Swift runtime's conformance tables: on success
//     it logs "dynamic cast ok: <description>" at SVC_LOG_DEBUG, otherwise it
//     logs "dynamic cast failed" at SVC_LOG_ERROR and fails with -2;
//   - svc_loop returns SVC_CONTINUE, or SVC_DONE on the Nth call when the
//     config key `done_after` is N > 0 (same meaning as in probe.c);
//   - svc_stop logs "stop after <n> loops" at SVC_LOG_INFO and releases the state.
//
// Foundation is deliberately not imported: only the Swift standard library.

import CServiceHostABI

#if PROBE_V2
private let probeVersion: StaticString = "2.0.0"
#else
private let probeVersion: StaticString = "1.0.0"
#endif

/// Something the runtime has to find a conformance for.
protocol ProbeDescribing {
    var probeDescription: String { get }
}

final class SwiftProbeState: ProbeDescribing {
    let host: UnsafePointer<svc_host>
    let name: String
    let doneAfter: Int
    var loops = 0

    init(host: UnsafePointer<svc_host>, name: String, doneAfter: Int) {
        self.host = host
        self.name = name
        self.doneAfter = doneAfter
    }

    var probeDescription: String { "SwiftProbeState(\(name))" }

    func log(_ level: Int32, _ message: String) {
        guard let log = host.pointee.log else { return }
        message.withCString { log(level, $0) }
    }
}

private func log(_ host: UnsafePointer<svc_host>, _ level: Int32, _ message: String) {
    guard let log = host.pointee.log else { return }
    message.withCString { log(level, $0) }
}

private func config(_ host: UnsafePointer<svc_host>, _ key: String) -> String? {
    guard let config = host.pointee.config else { return nil }
    return key.withCString { config($0) }.map { String(cString: $0) }
}

/// Casts an existential at run time; kept out of line so that the cast is
/// not folded away by the optimizer.
@inline(never)
private func describe(_ value: Any) -> String? {
    (value as? any ProbeDescribing)?.probeDescription
}

@_cdecl("svc_abi_version")
public func svc_abi_version() -> UInt32 {
    UInt32(SVC_ABI_VERSION)
}

@_cdecl("svc_plugin_version")
public func svc_plugin_version() -> UnsafePointer<CChar>? {
    // A string literal's bytes live in the image's read-only data: static.
    UnsafeRawPointer(probeVersion.utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("svc_create")
public func svc_create(_ host: UnsafePointer<svc_host>?, _ ctx: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 {
    guard let host, let ctx else { return -22 }
    let name = host.pointee.service_name.map { String(cString: $0) } ?? "(null)"
    let version = probeVersion.description
    log(host, Int32(SVC_LOG_INFO), "create name=\(name) version=\(version)")

    var doneAfter = 0
    if let text = config(host, "done_after") {
        if let value = Int(text), value >= 0 {
            doneAfter = value
        } else {
            log(host, Int32(SVC_LOG_WARN), "invalid done_after '\(text)', using 0")
        }
    }

    let state = SwiftProbeState(host: host, name: name, doneAfter: doneAfter)
    let any: Any = state
    guard let description = describe(any) else {
        log(host, Int32(SVC_LOG_ERROR), "dynamic cast failed")
        return -2
    }
    log(host, Int32(SVC_LOG_DEBUG), "dynamic cast ok: \(description)")

    ctx.pointee = Unmanaged.passRetained(state).toOpaque()
    return 0
}

@_cdecl("svc_loop")
public func svc_loop(_ ctx: UnsafeMutableRawPointer?) -> Int32 {
    guard let ctx else { return -22 }
    let state = Unmanaged<SwiftProbeState>.fromOpaque(ctx).takeUnretainedValue()
    state.loops += 1
    if state.doneAfter > 0 && state.loops == state.doneAfter {
        return Int32(SVC_DONE)
    }
    return Int32(SVC_CONTINUE)
}

@_cdecl("svc_stop")
public func svc_stop(_ ctx: UnsafeMutableRawPointer?) {
    guard let ctx else { return }
    let state = Unmanaged<SwiftProbeState>.fromOpaque(ctx).takeRetainedValue()
    state.log(Int32(SVC_LOG_INFO), "stop after \(state.loops) loops")
}
