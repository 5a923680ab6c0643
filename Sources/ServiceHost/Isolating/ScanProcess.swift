#if canImport(Glibc)
import Glibc
#endif

/// The child side of a load-time scan: a process forked by the fork server
/// that loads one staged plugin copy the way the host would (`dlopen`, which
/// runs its constructors; the required symbols; the ABI version), reports
/// the verdict on its socket and exits. Whatever the plugin's load-time code
/// does (crash, `exit`, sleep) happens here, never in the host.
///
/// It speaks the workers' codec (``WorkerMessage``): the host sends
/// `.scan(privateCopy:)`; the scan answers `.loading` just before `dlopen`
/// (the host counts the time allowed for loading from there), then
/// `.loaded(version:)` or `.loadFailed(code:reason:)`.
enum ScanProcess {
    static func run(channel: WorkerChannel) -> Never {
        guard case .message(.scan(let copy)) = channel.receive() else { _exit(0) }
        // The Swift runtime's crash handlers would print a backtrace of this
        // process and delay its end: a crash here is the plugin's, reported by the host.
        for signal in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP] { Glibc.signal(signal, SIG_DFL) }
        let staged = StagedPlugin(file: copy, identity: FileIdentity(stat()), privateCopy: copy,
                                  containsSwiftCode: true, ownsCopy: false)
        // The host's deadline for loading starts now, not when the fork began:
        // a loaded machine may take a while to run a new process at all.
        channel.send(.loading)
        do {
            let image = try PluginLoader.open(staged)
            channel.send(.loaded(version: image.version))
        } catch {
            channel.send(.loadFailed(code: error.code.description,
                                     reason: String(decoding: error.reason.utf8.prefix(Limits.maxLoadFailureReason), as: UTF8.self)))
        }
        // Skip atexit handlers and destructors a plugin registered: the verdict is in.
        _exit(0)
    }
}
