import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd how the host stands, by its notify protocol: one datagram
/// of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET` (a path, or
/// an abstract name written with a leading `@`). Written from the protocol,
/// so the host needs no libsystemd. Without `$NOTIFY_SOCKET` it is absent.
public struct SystemdNotifier: Sendable {
    private let address: [UInt8]
    /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the
    /// watchdog is meant for this process (`$WATCHDOG_PID` unset or ours).
    public let watchdogInterval: Duration?

    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let socket = environment["NOTIFY_SOCKET"], !socket.isEmpty,
              socket.hasPrefix("/") || socket.hasPrefix("@"),
              socket.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else { return nil }
        var bytes = Array(socket.utf8)
        // An abstract name starts with a NUL byte in the address.
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        address = bytes
        let forUs = environment["WATCHDOG_PID"].map { Int32($0) == getpid() } ?? true
        if forUs, let microseconds = environment["WATCHDOG_USEC"].flatMap({ Int64($0) }), microseconds > 0 {
            watchdogInterval = .microseconds(microseconds / 2)
        } else {
            watchdogInterval = nil
        }
    }

    /// The variables systemd sets for the host alone: removed from the
    /// environment so that workers and the programs plugins start do not
    /// see them (a plugin's child must not answer for the host).
    public static func removeItsVariables() {
        for name in ProcessInfo.processInfo.environment.keys
        where name == "NOTIFY_SOCKET" || name.hasPrefix("WATCHDOG_") || name.hasPrefix("LISTEN_") {
            unsetenv(name)
        }
    }

    /// Sends one message (lines joined with newlines). Never blocks: a
    /// manager that does not read loses the message, not the host's time.
    public func send(_ lines: String...) {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { path in
            for (index, byte) in address.enumerated() { path[index] = byte }
        }
        // An abstract name's length counts exactly; a path's includes nothing after it.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        let message = Array(lines.joined(separator: "\n").utf8)
        _ = message.withUnsafeBytes { bytes in
            withUnsafePointer(to: &socketAddress) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, length)
                }
            }
        }
    }
}
