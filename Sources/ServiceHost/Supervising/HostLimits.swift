import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Process limits the host and its fork server set for themselves at start.
public enum HostLimits {
    /// Raises the soft limit on open descriptors to the hard limit (as
    /// systemd advises for programs that do not use `select()`): each
    /// process-isolated service holds one descriptor in the host and two in
    /// the fork server, and the usual soft limit of 1024 would cap them near
    /// a thousand, or five hundred.
    /// - Parameter logger: where the change, or the failure to make it, is said (`nil`: nowhere).
    public static func raiseDescriptorLimit(logger: Logger?) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        guard limit.rlim_cur < limit.rlim_max else { return }
        let was = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger?.debug("raised the open-file limit from \(was) to \(limit.rlim_max)")
        } else {
            logger?.warning("cannot raise the open-file limit from \(was) to \(limit.rlim_max): \(String(cString: strerror(errno)))")
        }
    }
}
