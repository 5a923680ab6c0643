import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Process limits the host sets for itself at start.
enum HostLimits {
    /// Raises the soft limit on open descriptors to the hard limit: each
    /// process-isolated service holds descriptors in the host (see README),
    /// and the usual soft limit of 1024 would cap them at a few hundred.
    static func raiseDescriptorLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        guard limit.rlim_cur < limit.rlim_max else { return }
        let was = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.debug("raised the open-file limit from \(was) to \(limit.rlim_max)")
        } else {
            logger.warning("cannot raise the open-file limit from \(was) to \(limit.rlim_max): \(String(cString: strerror(errno)))")
        }
    }
}
