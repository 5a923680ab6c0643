/// Text that came from a plugin, made safe to put in a log line.
enum PluginText {
    /// `text` with every control character escaped (`\n`, `\r`, `\t`,
    /// `\x1b`…, and `\\` for the backslash itself), so a plugin's message can
    /// neither start a line that looks like the host's nor move the cursor or
    /// colour a terminal.
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var result = ""
        result.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\\": result += "\\\\"
            case _ where needsEscape(scalar):
                let hex = String(scalar.value, radix: 16)
                result += scalar.value <= 0xFF
                    ? "\\x" + (hex.count < 2 ? "0" + hex : hex)
                    : "\\u{" + hex + "}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// C0 controls, DEL, C1 controls, the line and paragraph separators; and
    /// the backslash, so that an escape in the output is always the host's.
    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        return value < 0x20 || value == 0x7F || (0x80...0x9F).contains(value)
            || value == 0x2028 || value == 0x2029 || value == 0x5C
    }
}
