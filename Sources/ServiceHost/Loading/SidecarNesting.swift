/// A cheap pre-scan of a sidecar's text for how deeply it nests, so that text
/// toml++ would overflow its stack on is refused before toml++ sees it.
///
/// Depth counts the parts of a table header (`[a.b.c]` is 3), the parts of a
/// dotted key below it, and the arrays and inline tables a value is inside.
/// Strings and comments are skipped. The scan only needs to be conservative
/// enough for real sidecars (which nest a few levels) to pass and every
/// pathological nest to be caught; it does not validate TOML.
enum SidecarNesting {
    /// The deepest nesting in `text` and the 1-based line it is first reached
    /// on; `nil` for text with no keys at all.
    static func deepest(in text: String) -> (depth: Int, line: Int)? {
        let bytes = Array(text.utf8)
        let count = bytes.count
        var index = 0
        var line = 1
        var containers: [UInt8] = []
        var headerDepth = 0
        var keyDots = 0
        var inKey = true
        var atLineStart = true
        var deepest: (depth: Int, line: Int)?

        func note(_ depth: Int) {
            if depth > (deepest?.depth ?? 0) { deepest = (depth, line) }
        }

        /// Skips a string starting at `index` (at its opening quote).
        func skipString() {
            let quote = bytes[index]
            let escapes = quote == UInt8(ascii: "\"")
            if index + 2 < count, bytes[index + 1] == quote, bytes[index + 2] == quote {
                index += 3
                while index < count {
                    if escapes, bytes[index] == UInt8(ascii: "\\") { index += 2; continue }
                    if bytes[index] == UInt8(ascii: "\n") { line += 1 }
                    if index + 2 < count, bytes[index] == quote, bytes[index + 1] == quote, bytes[index + 2] == quote {
                        index += 3
                        while index < count, bytes[index] == quote { index += 1 }
                        return
                    }
                    index += 1
                }
                return
            }
            index += 1
            while index < count, bytes[index] != UInt8(ascii: "\n") {
                if escapes, bytes[index] == UInt8(ascii: "\\") { index += 2; continue }
                if bytes[index] == quote { index += 1; return }
                index += 1
            }
        }

        while index < count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "#"):
                while index < count, bytes[index] != UInt8(ascii: "\n") { index += 1 }
                continue
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                skipString()
                atLineStart = false
                note(headerDepth + keyDots + 1 + containers.count)
                continue
            case UInt8(ascii: "\n"):
                line += 1
                if containers.isEmpty {
                    inKey = true
                    keyDots = 0
                    atLineStart = true
                }
                index += 1
                continue
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                index += 1
                continue
            case UInt8(ascii: "[") where containers.isEmpty && atLineStart:
                // A table header: its depth is its number of parts.
                index += 1
                var dots = 0
                while index < count, bytes[index] != UInt8(ascii: "]"), bytes[index] != UInt8(ascii: "\n") {
                    if bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") {
                        skipString()
                        continue
                    }
                    if bytes[index] == UInt8(ascii: ".") { dots += 1 }
                    index += 1
                }
                while index < count, bytes[index] == UInt8(ascii: "]") { index += 1 }
                headerDepth = dots + 1
                keyDots = 0
                note(headerDepth)
                atLineStart = false
                inKey = false
                continue
            case UInt8(ascii: "["):
                containers.append(byte)
                inKey = false
            case UInt8(ascii: "{"):
                containers.append(byte)
                inKey = true
                keyDots = 0
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                _ = containers.popLast()
                inKey = false
            case UInt8(ascii: ","):
                if containers.last == UInt8(ascii: "{") {
                    inKey = true
                    keyDots = 0
                }
            case UInt8(ascii: "="):
                inKey = false
            case UInt8(ascii: "."):
                if inKey { keyDots += 1 }
            default:
                break
            }
            atLineStart = false
            note(headerDepth + keyDots + 1 + containers.count)
            index += 1
        }
        return deepest
    }
}
