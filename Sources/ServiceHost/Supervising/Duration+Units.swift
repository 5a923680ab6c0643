#if canImport(Glibc)
import Glibc
#endif

extension Duration {
    /// The duration in seconds, as a floating-point number.
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Whole nanoseconds, saturating at `Int64`'s bounds (about 292 years)
    /// instead of trapping.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return Self.saturating(seconds, times: 1_000_000_000, plus: attoseconds / 1_000_000_000)
    }

    /// Whole milliseconds, for log lines that speak the sidecar's unit;
    /// saturating instead of trapping.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return Self.saturating(seconds, times: 1000, plus: attoseconds / 1_000_000_000_000_000)
    }

    private static func saturating(_ value: Int64, times factor: Int64, plus extra: Int64) -> Int64 {
        let (product, overflow) = value.multipliedReportingOverflow(by: factor)
        if overflow { return value < 0 ? .min : .max }
        let (sum, sumOverflow) = product.addingReportingOverflow(extra)
        if sumOverflow { return extra < 0 ? .min : .max }
        return sum
    }
}

extension timespec {
    /// The time as whole nanoseconds since its clock's epoch.
    var nanoseconds: Int64 { Int64(tv_sec) * 1_000_000_000 + Int64(tv_nsec) }
}
