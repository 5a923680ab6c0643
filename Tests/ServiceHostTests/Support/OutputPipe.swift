import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A pipe for a child's output (a socket pair), with both ends close-on-exec; the child gets
/// its copies through dup2, which drops the flag.
///
/// Foundation's `Pipe` is not close-on-exec, and `Process` closes no other
/// descriptors when it spawns: a `Pipe` made by one test leaked into every
/// program another test spawned at that moment, so its reader saw the end
/// only when that program exited (a soak test's host, half a minute later).
struct OutputPipe {
    let reading: FileHandle
    let writing: FileHandle

    init() throws {
        // A stream socket pair, since Swift's Glibc module has no pipe2: made
        // close-on-exec in the same call, with no window for a spawn to slip into.
        var ends: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "no pipe: \(String(cString: strerror(errno)))"])
        }
        reading = FileHandle(fileDescriptor: ends[0], closeOnDealloc: true)
        writing = FileHandle(fileDescriptor: ends[1], closeOnDealloc: true)
    }

    /// Makes it `process`'s standard output and error.
    func attach(to process: Process) {
        process.standardOutput = writing
        process.standardError = writing
    }

    /// Closes this process's copy of the write end, once the child has its own,
    /// so that the reader sees the end when the child exits.
    func closeWriting() {
        try? writing.close()
    }
}
