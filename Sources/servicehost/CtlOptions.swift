import ArgumentParser
import Foundation
import NIOHTTP1
import ServiceHost
import ServiceHostControl

/// Options every `ctl` subcommand takes, and the requests they make.
struct CtlOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The host's control socket.",
        discussion: ControlSocketPath.defaultDescription + " (as `run`)",
        valueName: "path"))
    var socket: String?

    var path: String { socket ?? ControlSocketPath.defaultPath() }

    /// A refusal or a failure, already reported on standard error, with the exit code it calls for.
    struct Failed: Error {
        let exitCode: ExitCode
    }

    /// Sends a request and returns the JSON of a successful answer; a
    /// refusal is reported (naming the service, or the socket and what to
    /// check) and thrown as ``Failed`` with its exit code.
    func send(_ method: HTTPMethod, _ target: String, waiting: Duration = .zero) async throws(Failed) -> Data {
        let answer: ControlClient.Answer
        do {
            answer = try await ControlClient(path: path, timeout: .seconds(10) + waiting).send(method, target)
        } catch {
            Self.report(error.description)
            throw Failed(exitCode: error.unreachable ? CtlExit.unknown : CtlExit.failed)
        }
        guard (200..<300).contains(answer.status) else {
            let failure = try? ControlDocument.decoder().decode(ControlDocument.Failure.self, from: answer.body)
            Self.report(failure?.error.message ?? "the host answered \(answer.status)")
            let unknown = ["unknown_service", "not_found"].contains(failure?.error.code ?? "")
            throw Failed(exitCode: unknown ? CtlExit.unknown : CtlExit.failed)
        }
        return answer.body
    }

    /// ``send(_:_:waiting:)``, its answer decoded.
    func request<Document: Decodable>(_ method: HTTPMethod, _ target: String, as type: Document.Type,
                                      waiting: Duration = .zero) async throws(Failed) -> Document {
        let body = try await send(method, target, waiting: waiting)
        do {
            return try ControlDocument.decoder().decode(Document.self, from: body)
        } catch {
            Self.report("the host's answer cannot be read: \(error)")
            throw Failed(exitCode: CtlExit.failed)
        }
    }

    static func report(_ message: String) {
        FileHandle.standardError.write(Data("servicehost ctl: \(message)\n".utf8))
    }

    /// A service name as one path segment.
    static func segment(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?"))) ?? name
    }
}
