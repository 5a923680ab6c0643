import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A bare HTTP/1.1 client over TCP on the loopback, for the host's `--http`
/// listener: one request, the whole answer read to the end, on a thread of
/// its own (its reads block), never on the test's cooperative pool.
enum HTTPGet {
    struct Answer: Sendable {
        var status: Int
        var body: String
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    static func request(_ method: String = "GET", port: Int, _ target: String) async throws -> Answer {
        let raw = try await Blocking.run { try exchange("\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", port: port) }
        guard let split = raw.range(of: "\r\n\r\n") else { throw Failure(description: "no header end in \(raw)") }
        let statusLine = raw[..<split.lowerBound].split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw Failure(description: "bad status line '\(statusLine)'") }
        return Answer(status: status, body: String(raw[split.upperBound...]))
    }

    /// The port a `run --http 127.0.0.1:0` host listens on, from its log line.
    static func port(of host: HostProcess) async throws -> Int {
        try await host.waitForOutput("metrics and health on http://127.0.0.1:")
        let text = host.outputText
        guard let start = text.range(of: "metrics and health on http://127.0.0.1:")?.upperBound,
              let port = Int(text[start...].prefix { $0.isNumber }) else {
            throw Failure(description: "no port in \(text)")
        }
        return port
    }

    private static func exchange(_ request: String, port: Int) throws -> String {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket: \(errno)") }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Failure(description: "connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))") }
        let bytes = Array(request.utf8)
        guard bytes.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw Failure(description: "send: \(errno)")
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            answer += buffer[..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }
}

/// Prometheus' own Python parser (`prometheus_client.parser`, which `.ci/run`
/// installs): the exposition text in, every sample out, or the parser's error.
enum PrometheusParser {
    struct Sample: Decodable, Equatable {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    static func samples(of text: String) async throws -> [Sample] {
        let script = """
            import json, sys
            try:
                from prometheus_client.parser import text_string_to_metric_families
            except ImportError:
                sys.exit("prometheus_client is missing: pip install prometheus_client (as .ci/run does)")
            out = []
            for family in text_string_to_metric_families(sys.stdin.read()):
                for s in family.samples:
                    out.append({"name": s.name, "labels": s.labels, "value": s.value})
            print(json.dumps(out))
            """
        let output = try await Blocking.run { () throws -> Data in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script]
            let input = Pipe(), output = Pipe(), errors = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            input.fileHandleForWriting.write(Data(text.utf8))
            try input.fileHandleForWriting.close()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            let problems = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw HTTPGet.Failure(description: "the Prometheus parser refused the text: \(String(decoding: problems, as: UTF8.self))")
            }
            return data
        }
        return try JSONDecoder().decode([Sample].self, from: output)
    }
}

extension [PrometheusParser.Sample] {
    /// The value of the one sample with this name and these labels (all of them).
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        first { $0.name == name && $0.labels == labels }?.value
    }

    func named(_ name: String) -> [PrometheusParser.Sample] { filter { $0.name == name } }
}
