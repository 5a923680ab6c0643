import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A bare Unix-socket client, for sending what no well-behaved client would
/// (garbage, oversized requests, nothing at all) to the control socket.
final class RawSocketClient: @unchecked Sendable {
    let descriptor: Int32

    init(path: String) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.utf8.enumerated() where index < bytes.count - 1 { bytes[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "connect to \(path): \(reason)"])
        }
    }

    deinit { close(descriptor) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { return }
            sent += count
        }
    }

    /// Everything the server sends until it closes the connection, read on a
    /// thread of its own (a blocking read), within `timeout`.
    func readToEnd(timeout: Duration) async throws -> String {
        let descriptor = self.descriptor
        return try await withDeadline(timeout, waiting: "the control socket to answer and close",
                                      onTimeout: { shutdown(descriptor, Int32(SHUT_RDWR)) }) {
            await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    var data = [UInt8]()
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    while true {
                        let count = read(descriptor, &buffer, buffer.count)
                        if count < 0, errno == EINTR { continue }
                        guard count > 0 else { break }
                        data += buffer[..<count]
                    }
                    continuation.resume(returning: String(decoding: data, as: UTF8.self))
                }
            }
        }
    }
}
