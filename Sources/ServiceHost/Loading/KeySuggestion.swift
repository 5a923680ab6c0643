/// The known key an unknown one was probably meant to be: a typo such as
/// `interval_msec` or `intervl_ms` is within a small edit distance.
enum KeySuggestion {
    /// The nearest of `known` within an edit distance of 2 (ties go to the first in sorted order).
    static func nearest(to key: String, among known: some Sequence<String>) -> String? {
        var best: (key: String, distance: Int)?
        for candidate in known.sorted() {
            let distance = editDistance(Array(key.utf8), Array(candidate.utf8))
            if distance <= 2, distance < (best?.distance ?? .max) { best = (candidate, distance) }
        }
        return best?.key
    }

    /// Levenshtein distance; keys are short, so the quadratic table is fine.
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        guard a.count < 256, b.count < 256 else { return .max }
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
