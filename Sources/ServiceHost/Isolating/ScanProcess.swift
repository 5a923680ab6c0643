#if canImport(Glibc)
import Glibc
#endif

/// The child side of a load-time scan: a process forked by the fork server
/// that loads one staged plugin copy the way the host would (`dlopen`, which
/// runs its constructors; the required symbols; the ABI version), reports
/// the verdict on its socket and exits. Whatever the plugin's load-time code
/// does (crash, `exit`, sleep) happens here, never in the host.
///
/// The protocol is deliberately tiny and independent of the worker codec:
/// the host sends the private copy's path as one datagram; the scan answers
/// one datagram, `0` + the plugin's version string when it loads, or a
/// failure byte (1 load failed, 2 missing symbol, 3 ABI mismatch) + reason.
/// Before loading, it sends the single byte `0xFF`, from which the host
/// counts the time allowed for loading.
enum ScanProcess {
    enum Outcome: UInt8 {
        case loaded = 0
        case loadFailed = 1
        case missingSymbol = 2
        case abiMismatch = 3
        /// Sent alone just before `dlopen`: the scan has started loading.
        case loading = 0xFF
    }

    static func run(descriptor: Int32) -> Never {
        var path = [UInt8](repeating: 0, count: 8192)
        var count = -1
        repeat {
            count = path.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        } while count < 0 && errno == EINTR
        guard count > 0 else { _exit(0) }
        let copy = String(decoding: path[..<count], as: UTF8.self)
        // The Swift runtime's crash handlers would print a backtrace of this
        // process and delay its end: a crash here is the plugin's, reported by the host.
        for signal in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP] { Glibc.signal(signal, SIG_DFL) }
        let staged = StagedPlugin(file: copy, identity: FileIdentity(stat()), privateCopy: copy,
                                  containsSwiftCode: true, ownsCopy: false)
        // The host's deadline for loading starts now, not when the fork began:
        // a loaded machine may take a while to run a new process at all.
        var loading = Outcome.loading.rawValue
        _ = send(descriptor, &loading, 1, Int32(MSG_NOSIGNAL))
        var answer: [UInt8]
        do {
            let image = try PluginLoader.open(staged)
            answer = [Outcome.loaded.rawValue] + Array((image.version ?? "").utf8)
        } catch {
            let outcome: Outcome = switch error.code {
            case .missingSymbol: .missingSymbol
            case .abiMismatch: .abiMismatch
            default: .loadFailed
            }
            answer = [outcome.rawValue] + Array(error.reason.utf8.prefix(16 * 1024))
        }
        _ = answer.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        // Skip atexit handlers and destructors a plugin registered: the verdict is in.
        _exit(0)
    }
}
