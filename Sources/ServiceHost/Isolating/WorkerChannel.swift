import CProcessShims
import CThreadShims
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One end of a `SOCK_SEQPACKET` Unix socket between the host and a worker:
/// whole messages, in order, and an end of file when the other side's
/// process is gone, even if it died without a word.
///
/// Messages already sent stay readable after the sender dies, so no log
/// line a worker wrote before crashing is lost.
final class WorkerChannel: @unchecked Sendable {
    let descriptor: Int32
    /// Room for the largest message; allocated once per channel.
    private let buffer: UnsafeMutableRawBufferPointer
    private var closed = false
    /// Keeps the fragments of one message together when several threads send.
    private let sendLock = Mutex(())

    /// What a receive found.
    enum Received: Equatable {
        case message(WorkerMessage)
        /// The other end is closed: its process exited or was killed.
        case endOfFile
        /// Nothing arrived before the deadline.
        case timedOut
        /// The ``Wakeup`` was signalled.
        case woken
        /// The other side sent something that is not a message (the reason); the channel cannot be trusted any more.
        case malformed(String)
    }

    /// Fragments of a large message received so far.
    private var pending: [UInt8] = []

    /// A descriptor that came with the last message received (`SCM_RIGHTS`),
    /// until ``takePassedDescriptor()`` claims it; closed when the next
    /// message arrives or the channel closes, so none the other side sends
    /// unasked stays open.
    private var passed: Int32?
    /// Room for the control data of a received message: one passed
    /// descriptor is used; any more that fit are closed (``claimDescriptor``),
    /// and the kernel drops those that do not fit.
    private static let controlSpace = 64
    private let control = UnsafeMutableRawPointer.allocate(byteCount: WorkerChannel.controlSpace, alignment: 8)

    /// The descriptor that came with the message last received, now the caller's to close.
    func takePassedDescriptor() -> Int32? {
        defer { passed = nil }
        return passed
    }

    private func dropPassedDescriptor() {
        if let passed { Glibc.close(passed) }
        passed = nil
    }

    init(descriptor: Int32) {
        self.descriptor = descriptor
        buffer = .allocate(byteCount: Self.receiveBufferSize, alignment: 8)
    }

    /// A connected pair, both ends close-on-exec.
    static func pair() throws(Errno) -> (WorkerChannel, WorkerChannel) {
        var ends: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw Errno(errno)
        }
        return (WorkerChannel(descriptor: ends[0]), WorkerChannel(descriptor: ends[1]))
    }

    /// How a send ended.
    enum SendResult: Equatable {
        case sent
        /// The encoded message exceeds ``WorkerMessage/maxSize`` (its size in bytes); nothing was sent.
        case tooLarge(Int)
        /// The other side did not take it before the deadline.
        case timedOut
        /// The socket failed (the other side is gone, usually).
        case failed(errno: Int32)

        var succeeded: Bool { self == .sent }
    }

    /// Sends one message, in fragments when it does not fit one datagram
    /// (a datagram is bounded by the socket's send buffer, which an
    /// unprivileged process cannot raise past `wmem_max`). Never raises `SIGPIPE`.
    /// - Parameter deadline: give up then if the other side does not read (`nil`: wait as long as it takes).
    @discardableResult
    func send(_ message: WorkerMessage, until deadline: ContinuousClock.Instant? = nil) -> SendResult {
        let bytes = message.encoded()
        guard bytes.count <= WorkerMessage.maxSize else { return .tooLarge(bytes.count) }
        return sendLock.withLock { _ in
            bytes.count <= Self.fragmentSize ? sendDatagram(bytes[...], until: deadline) : sendFragments(bytes, until: deadline)
        }
    }

    /// Sends one message that fits a datagram on a socket held only as a
    /// descriptor (the fork server's copy of a worker's end), without waiting
    /// for room; false if the other side's queue is full or gone.
    static func sendWithoutWaiting(_ message: WorkerMessage, on descriptor: Int32) -> Bool {
        let bytes = message.encoded()
        guard bytes.count <= fragmentSize else { return false }
        return bytes.withUnsafeBytes {
            Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) == $0.count
        }
    }

    private func sendFragments(_ bytes: [UInt8], until deadline: ContinuousClock.Instant?) -> SendResult {
        var start = 0
        while start < bytes.count {
            let end = min(start + Self.fragmentSize, bytes.count)
            var fragment: [UInt8] = [end == bytes.count ? Self.lastFragment : Self.moreFragments]
            fragment.append(contentsOf: bytes[start..<end])
            let result = sendDatagram(fragment[...], until: deadline)
            guard result == .sent else { return result }
            start = end
        }
        return .sent
    }

    /// The payload of one fragment of a large message; with its tag byte it fits the receive buffer.
    static let fragmentSize = 60 * 1024
    private static let receiveBufferSize = 64 * 1024
    /// Tags of fragments, outside the range of ``WorkerMessage``'s tags.
    private static let moreFragments: UInt8 = 0xFE
    private static let lastFragment: UInt8 = 0xFF

    private func sendDatagram(_ bytes: ArraySlice<UInt8>, until deadline: ContinuousClock.Instant?) -> SendResult {
        while true {
            let sent = bytes.withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if sent >= 0 { return .sent }
            let error = errno
            if error == EINTR { continue }
            guard error == EAGAIN || error == EWOULDBLOCK else { return .failed(errno: error) }
            // The other side's queue is full: wait for room, within the deadline.
            var fds = [pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)]
            var timeout: Int32 = -1
            if let deadline {
                let left = deadline - ContinuousClock.now
                if left <= .zero { return .timedOut }
                timeout = Int32(clamping: max(1, left.milliseconds + 1))
            }
            if poll(&fds, 1, timeout) < 0, errno != EINTR { return .failed(errno: errno) }
        }
    }

    /// Waits for the next message.
    /// - Parameters:
    ///   - deadline: give up then (`nil` waits as long as it takes).
    ///   - wake: ends the wait early with ``Received/woken`` when signalled
    ///     (see ``Wakeup``); only the host's threads pass one.
    func receive(until deadline: ContinuousClock.Instant? = nil, wake: Wakeup? = nil) -> Received {
        if let wake {
            guard !wake.enter() else {
                wake.leave()
                return .woken
            }
        }
        defer { wake?.leave() }
        while true {
            var fds = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
            var timeout: Int32 = -1
            if let deadline {
                let left = deadline - ContinuousClock.now
                if left <= .zero { return .timedOut }
                timeout = Int32(clamping: max(1, left.milliseconds + 1))
            }
            let ready = wake == nil ? poll(&fds, 1, timeout) : cprocess_poll_wakeable(&fds, 1, timeout)
            if ready < 0 {
                if errno == EINTR {
                    if wake?.isSignalled == true { return .woken }
                    continue
                }
                return .endOfFile
            }
            if ready == 0 { continue }  // recheck the deadline
            if fds[0].revents != 0 {
                // MSG_TRUNC: the datagram's real length, so that a cut one is noticed.
                var controlLength = 0
                let count: Int = withMessageHeader(payload: buffer, control: control, space: Self.controlSpace) { header in
                    let received = recvmsg(descriptor, &header, Int32(MSG_TRUNC) | Int32(MSG_CMSG_CLOEXEC))
                    controlLength = header.msg_controllen
                    return received
                }
                if count < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    return .endOfFile
                }
                dropPassedDescriptor()
                passed = claimDescriptor(in: control, length: controlLength)
                if count == 0 { return .endOfFile }
                guard count <= buffer.count else { return .malformed("a datagram of \(count) bytes (at most \(buffer.count))") }
                let datagram = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
                if datagram[0] == Self.moreFragments || datagram[0] == Self.lastFragment {
                    guard pending.count + count - 1 <= WorkerMessage.maxSize else {
                        pending = []
                        return .malformed("a message over \(WorkerMessage.maxSize) bytes")
                    }
                    pending.append(contentsOf: datagram[1...])
                    // Descriptors travel with single-datagram messages only.
                    dropPassedDescriptor()
                    if datagram[0] == Self.moreFragments { continue }
                    let whole = pending
                    pending = []
                    guard let message = whole.withUnsafeBytes({ WorkerMessage(decoding: $0) }) else {
                        return .malformed("an undecodable message of \(whole.count) bytes")
                    }
                    return .message(message)
                }
                guard pending.isEmpty, let message = WorkerMessage(decoding: datagram) else {
                    pending = []
                    return .malformed("an undecodable message of \(count) bytes (tag \(datagram[0]))")
                }
                return .message(message)
            }
        }
    }

    // MARK: Passing a socket

    /// Sends `message` (one datagram: the messages that pass sockets are
    /// small) with `passed` attached as `SCM_RIGHTS`; how the host hands the
    /// fork server the socket of a worker or scan to fork.
    /// With a `deadline`, a full socket is waited on until then (`ETIMEDOUT`).
    func send(_ message: WorkerMessage, passing passed: Int32, until deadline: ContinuousClock.Instant? = nil) throws(Errno) {
        var bytes = message.encoded()
        let space = cmsgSpace(MemoryLayout<Int32>.size)
        let control = UnsafeMutableRawPointer.allocate(byteCount: space, alignment: 8)
        defer { control.deallocate() }
        control.initializeMemory(as: UInt8.self, repeating: 0, count: space)
        let cmsg = control.assumingMemoryBound(to: cmsghdr.self)
        cmsg.pointee.cmsg_len = cmsgLength(MemoryLayout<Int32>.size)
        cmsg.pointee.cmsg_level = SOL_SOCKET
        cmsg.pointee.cmsg_type = Int32(SCM_RIGHTS)
        (control + cmsgAlign(MemoryLayout<cmsghdr>.size)).storeBytes(of: passed, as: Int32.self)
        let result: Int = bytes.withUnsafeMutableBytes { payload in
            withMessageHeader(payload: payload, control: control, space: space) { header in
                sendLock.withLock { _ in
                    while true {
                        let sent = sendmsg(descriptor, &header, Int32(MSG_NOSIGNAL) | (deadline == nil ? 0 : Int32(MSG_DONTWAIT)))
                        if sent >= 0 { return sent }
                        if errno == EINTR { continue }
                        guard let deadline, errno == EAGAIN else { return sent }
                        let left = deadline - ContinuousClock.now
                        guard left > .zero else {
                            errno = ETIMEDOUT
                            return -1
                        }
                        var writable = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                        _ = poll(&writable, 1, Int32(clamping: max(1, left.milliseconds + 1)))
                    }
                }
            }
        }
        guard result >= 0 else { throw Errno(errno) }
    }

    // MARK: Passing bytes in a sealed memfd

    /// Sends `message` with a sealed memfd holding a copy of `bytes` (kept
    /// state, up to 16 MiB, which would take many datagrams and a copy on
    /// each side otherwise).
    func send(_ message: WorkerMessage, withSealedCopyOf bytes: UnsafeRawBufferPointer,
              until deadline: ContinuousClock.Instant? = nil) throws(Errno) {
        let descriptor = cprocess_sealed_memfd(bytes.baseAddress, bytes.count)
        guard descriptor >= 0 else { throw Errno(-descriptor) }
        defer { Glibc.close(descriptor) }
        try send(message, passing: descriptor, until: deadline)
    }

    /// The `size` bytes of the sealed memfd that came with the message last
    /// received, mapped read-only for good (the caller may unmap them); `nil`
    /// (the descriptor closed) when none came, or it is not a memfd of that
    /// size sealed against writing, growing and shrinking.
    func mapPassedSealedBytes(size: Int) -> UnsafeRawBufferPointer? {
        // The mapping outlives the descriptor.
        guard let (descriptor, mapping) = takePassedSealed(size: size) else { return nil }
        Glibc.close(descriptor)
        return mapping
    }

    /// The sealed memfd of `size` bytes that came with the message last
    /// received, and its content mapped read-only, both now the caller's
    /// (`munmap` and `close`); `nil` (the descriptor closed) as for
    /// ``mapPassedSealedBytes(size:)``.
    func takePassedSealed(size: Int) -> (descriptor: Int32, mapping: UnsafeRawBufferPointer)? {
        guard let descriptor = takePassedDescriptor() else { return nil }
        guard size > 0, cprocess_check_sealed(descriptor, size) == 0,
              let mapped = mmap(nil, size, PROT_READ, MAP_SHARED, descriptor, 0), mapped != MAP_FAILED else {
            Glibc.close(descriptor)
            return nil
        }
        return (descriptor, UnsafeRawBufferPointer(start: mapped, count: size))
    }

    /// The next message and the descriptor that came with it, if any; `nil`
    /// once the other side is gone. Anything undecodable is skipped (with a
    /// descriptor that came with it closed): the fork server waits for the
    /// host's next well-formed request.
    func receivePassing() -> (message: WorkerMessage, passed: Int32?)? {
        let control = UnsafeMutableRawPointer.allocate(byteCount: Self.controlSpace, alignment: 8)
        defer { control.deallocate() }
        while true {
            var controlLength = 0
            let received: Int = withMessageHeader(payload: buffer, control: control, space: Self.controlSpace) { header in
                let count = recvmsg(descriptor, &header, Int32(MSG_CMSG_CLOEXEC))
                controlLength = header.msg_controllen
                return count
            }
            if received < 0 && errno == EINTR { continue }
            if received <= 0 { return nil }
            let passed = claimDescriptor(in: control, length: controlLength)
            guard let message = WorkerMessage(decoding: UnsafeRawBufferPointer(rebasing: buffer[0..<received])) else {
                if let passed { Glibc.close(passed) }
                continue
            }
            return (message, passed)
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        dropPassedDescriptor()
        Glibc.close(descriptor)
    }

    deinit {
        close()
        buffer.deallocate()
        control.deallocate()
    }

    /// Runs `body` with a `msghdr` over one buffer of payload and `space` bytes of control data.
    private func withMessageHeader<T>(payload: UnsafeMutableRawBufferPointer, control: UnsafeMutableRawPointer, space: Int,
                                      _ body: (inout msghdr) -> T) -> T {
        var vector = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
        return withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var header = msghdr()
            header.msg_iov = vectorPointer
            header.msg_iovlen = 1
            header.msg_control = control
            header.msg_controllen = space
            return body(&header)
        }
    }

    /// The first descriptor passed in `control` (`length` bytes of a
    /// received message's control data); every other one is closed: a
    /// message carries one at most, and the other side may be hostile.
    private func claimDescriptor(in control: UnsafeMutableRawPointer, length: Int) -> Int32? {
        var first: Int32?
        var offset = 0
        while offset + MemoryLayout<cmsghdr>.size <= length {
            let header = (control + offset).load(as: cmsghdr.self)
            let size = Int(header.cmsg_len)
            guard size >= cmsgLength(0), offset + size <= length else { break }
            if header.cmsg_level == SOL_SOCKET, header.cmsg_type == Int32(SCM_RIGHTS) {
                for index in 0..<(size - cmsgLength(0)) / MemoryLayout<Int32>.size {
                    let descriptor = (control + offset + cmsgLength(0) + index * MemoryLayout<Int32>.size).loadUnaligned(as: Int32.self)
                    if first == nil { first = descriptor } else { Glibc.close(descriptor) }
                }
            }
            offset += cmsgAlign(size)
        }
        return first
    }

    // CMSG_SPACE and CMSG_LEN are macros Swift cannot import; on Linux both
    // round to the alignment of size_t.
    private func cmsgAlign(_ length: Int) -> Int {
        (length + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
    }

    private func cmsgSpace(_ length: Int) -> Int { cmsgAlign(MemoryLayout<cmsghdr>.size) + cmsgAlign(length) }
    private func cmsgLength(_ length: Int) -> Int { cmsgAlign(MemoryLayout<cmsghdr>.size) + length }
}

/// Wakes a host thread blocked in ``WorkerChannel/receive(until:wake:)``
/// when a stop is ordered, without a descriptor: a signal
/// (`cprocess_wake_signal`) sent to that thread alone interrupts its wait.
/// A descriptor per worker would be a second one in the host for every
/// process-isolated service.
///
/// No wake-up is lost: the flag is set before the signal is sent, the waiter
/// registers itself and reads the flag under the same lock, and the signal is
/// blocked in the waiting thread outside its `ppoll` (see `cprocess_poll_wakeable`).
final class Wakeup: Sendable {
    private struct State {
        var waiter: pthread_t?
        var signalled = false
    }

    private let state = Mutex(State())

    /// Installs the handler that lets the signal interrupt a wait (one that
    /// does nothing: the default would end the process); once per process.
    static func installHandler() {
        _ = handlerInstalled
    }

    private static let handlerInstalled: Bool = csignal_install_noop(cprocess_wake_signal()) == 0

    init() {}

    /// Wakes the waiting thread, or the next wait.
    func signal() {
        state.withLock { state in
            state.signalled = true
            // Under the lock: the waiter cannot leave (and end) meanwhile.
            if let waiter = state.waiter { _ = cprocess_wake(waiter) }
        }
    }

    /// Consumes a wake-up.
    func clear() {
        state.withLock { $0.signalled = false }
    }

    var isSignalled: Bool { state.withLock { $0.signalled } }

    /// Whether a thread waits now (for tests: a wake-up that must interrupt a wait in progress).
    var hasWaiter: Bool { state.withLock { $0.waiter != nil } }

    /// Registers the calling thread as the waiter; whether a wake-up is pending already.
    fileprivate func enter() -> Bool {
        cprocess_block_wake_signal()
        return state.withLock { state in
            state.waiter = pthread_self()
            return state.signalled
        }
    }

    fileprivate func leave() {
        state.withLock { $0.waiter = nil }
    }
}
