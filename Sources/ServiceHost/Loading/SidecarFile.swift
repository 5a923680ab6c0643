import TOMLKit

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a service's sidecar TOML file into its configuration.
///
/// Every problem with the contents is an ``PluginError/Code/invalidConfiguration``
/// naming the key (or the line), because the operator who wrote the sidecar
/// has to find what to fix from one log line.
enum SidecarFile {
    /// Parses `text`, the contents of the sidecar at `file` (the path is used in errors).
    static func parse(_ text: String, file: String) throws(PluginError) -> ServiceConfiguration {
        let document = try parseDocument(text, file: file)
        var configuration = ServiceConfiguration()
        // toml++ keeps a table's keys sorted, so when a file has several
        // problems the one reported does not depend on hashing.
        for (name, value) in document {
            guard let key = keys[name] else {
                let known = keys.keys.sorted().joined(separator: ", ")
                let suggestion = KeySuggestion.nearest(to: name, among: keys.keys).map { "did you mean '\($0)'? " } ?? ""
                throw PluginError(.invalidConfiguration, file: file,
                                  reason: "unknown key '\(name)' (\(suggestion)known keys: \(known))")
            }
            try key.read(Value(key: name, value: value, file: file), &configuration)
        }
        return configuration
    }

    /// Reads and parses the file at `path`.
    ///
    /// A missing file is ``PluginError/Code/notFound`` rather than
    /// `unreadable`: the sidecar is optional, and a caller that checked for it
    /// and then lost a race with its deletion can treat the two differently.
    static func load(path: String) throws(PluginError) -> ServiceConfiguration {
        let bytes = try readRegularFile(at: path)
        // TOML is UTF-8 by definition; repairing bad bytes would silently
        // change keys or values instead of pointing at the broken file.
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw PluginError(.invalidConfiguration, file: path, reason: "not valid UTF-8 text")
        }
        return try parse(text, file: path)
    }

    // MARK: - Keys

    /// A top-level key: how its value is checked and where it is stored.
    ///
    /// A new sidecar key is one entry in ``keys``; the checks and their error
    /// messages live in ``Value`` so that all keys word them alike.
    struct Key: Sendable {
        let read: @Sendable (Value, inout ServiceConfiguration) throws(PluginError) -> Void
    }

    static let keys: [String: Key] = [
        "restart": Key { (value, configuration) throws(PluginError) in
            configuration.restart = try value.oneOf([.always, .onFailure, .never], RestartPolicy.init(sidecarValue:))
        },
        "delay_ms": Key { (value, configuration) throws(PluginError) in
            configuration.delay = try value.milliseconds()
        },
        "interval_ms": Key { (value, configuration) throws(PluginError) in
            configuration.interval = try value.milliseconds()
        },
        "retries": Key { (value, configuration) throws(PluginError) in
            let retries = try value.integer(atLeast: -1, spelled: "-1 (unlimited)")
            configuration.retries = retries == -1 ? nil : retries
        },
        "backoff_initial_ms": Key { (value, configuration) throws(PluginError) in
            configuration.backoffInitial = try value.milliseconds()
        },
        "backoff_max_ms": Key { (value, configuration) throws(PluginError) in
            configuration.backoffMax = try value.milliseconds()
        },
        "healthy_after_ms": Key { (value, configuration) throws(PluginError) in
            configuration.healthyAfter = try value.milliseconds()
        },
        "restart_limit": Key { (value, configuration) throws(PluginError) in
            configuration.restartLimit = try value.integer(atLeast: 0)
        },
        "restart_window_ms": Key { (value, configuration) throws(PluginError) in
            configuration.restartWindow = try value.milliseconds()
        },
        "isolation": Key { (value, configuration) throws(PluginError) in
            configuration.isolation = try value.oneOf([Isolation.thread, .process], Isolation.init(name:))
        },
        "stop_timeout_ms": Key { (value, configuration) throws(PluginError) in
            configuration.stopTimeout = try value.milliseconds()
        },
        "watchdog_ms": Key { (value, configuration) throws(PluginError) in
            let watchdog = try value.milliseconds()
            configuration.watchdog = watchdog == .zero ? nil : watchdog
        },
        "start_timeout_ms": Key { (value, configuration) throws(PluginError) in
            let timeout = try value.milliseconds()
            configuration.startTimeout = timeout == .zero ? nil : timeout
        },
        "reload": Key { (value, configuration) throws(PluginError) in
            configuration.reload = try value.oneOf([ReloadOrder.restart, .overlap], ReloadOrder.init(name:))
        },
        "requires": Key { (value, configuration) throws(PluginError) in
            configuration.requires = try value.strings()
        },
        "config": Key { (value, configuration) throws(PluginError) in
            configuration.settings = try value.settings()
        },
    ]

    // MARK: - Parsing

    private static func parseDocument(_ text: String, file: String) throws(PluginError) -> TOMLTable {
        // toml++ recurses per level of nesting and dies of a stack overflow
        // (SIGSEGV, taking the host with it) on a few hundred KB of
        // `[config.a.a.a…]`; both bounds are checked before it sees the text.
        guard text.utf8.count <= Limits.maxSidecarSize else {
            throw PluginError(.invalidConfiguration, file: file,
                              reason: "is \(text.utf8.count) bytes, larger than the limit of \(Limits.maxSidecarSize) bytes for a sidecar")
        }
        if let (depth, line) = SidecarNesting.deepest(in: text), depth > Limits.maxSidecarNesting {
            throw PluginError(.invalidConfiguration, file: file,
                              reason: "nests tables, arrays or dotted keys \(depth) levels deep at line \(line), more than the limit of \(Limits.maxSidecarNesting)")
        }
        // TOMLKit hands the text to toml++ as a C string, which would end at
        // a NUL byte and quietly accept whatever came before it.
        if let nul = text.unicodeScalars.firstIndex(of: "\0") {
            let (line, column) = position(of: nul, in: text)
            throw malformed(file: file, line: line, column: column, message: "NUL character in the file")
        }
        do {
            return try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw malformed(file: file, line: error.source.begin.line, column: error.source.begin.column,
                            message: error.description)
        } catch {
            // TOMLTable(string:) documents only TOMLParseError; this keeps the
            // typed throw honest should a later TOMLKit throw something else.
            throw PluginError(.invalidConfiguration, file: file, reason: "malformed TOML: \(error)")
        }
    }

    private static func malformed(file: String, line: Int, column: Int, message: String) -> PluginError {
        PluginError(.invalidConfiguration, file: file,
                    reason: "malformed TOML at line \(line), column \(column): \(message)")
    }

    /// The 1-based line and column of `index`, counted as toml++ counts them.
    private static func position(of index: String.UnicodeScalarView.Index, in text: String) -> (Int, Int) {
        var line = 1
        var column = 1
        for scalar in text.unicodeScalars[..<index] {
            if scalar == "\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return (line, column)
    }

    // MARK: - Reading files

    private static func readRegularFile(at path: String) throws(PluginError) -> [UInt8] {
        // Opened as plugins are: never blocking on a FIFO, and refusing
        // anything but a regular file with what it is instead.
        let (descriptor, status) = try PluginLoader.openRegularFile(path)
        defer { close(descriptor) }
        guard Int(status.st_size) <= Limits.maxSidecarSize else {
            throw PluginError(.invalidConfiguration, file: path,
                              reason: "is \(status.st_size) bytes, larger than the limit of \(Limits.maxSidecarSize) bytes for a sidecar")
        }

        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                guard bytes.count + count <= Limits.maxSidecarSize else {
                    throw PluginError(.invalidConfiguration, file: path,
                                      reason: "grew past the limit of \(Limits.maxSidecarSize) bytes for a sidecar while being read")
                }
                bytes.append(contentsOf: chunk[..<count])
            } else if count == 0 {
                return bytes
            } else if errno != EINTR {
                throw PluginError(.unreadable, file: path, reason: "cannot read: \(systemMessage(errno))")
            }
        }
    }

    private static func systemMessage(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}

extension SidecarFile {
    /// One top-level value of a sidecar, with what its error messages need to name.
    struct Value {
        let key: String
        let value: any TOMLValueConvertible
        let file: String

        func integer(atLeast minimum: Int, spelled minimumText: String? = nil) throws(PluginError) -> Int {
            guard let integer = value.int else { throw wrongType(expected: .int) }
            guard integer >= minimum else {
                throw invalid("must be \(minimumText ?? String(minimum)) or more, found \(integer)")
            }
            return integer
        }

        /// A non-negative count of milliseconds, the unit of every `_ms` key,
        /// at most ``Limits/maxDurationMilliseconds``.
        func milliseconds() throws(PluginError) -> Duration {
            let milliseconds = try integer(atLeast: 0)
            guard Int64(milliseconds) <= Limits.maxDurationMilliseconds else {
                throw invalid("must be at most \(Limits.maxDurationMilliseconds) (about 24.8 days), found \(milliseconds)")
            }
            return .milliseconds(milliseconds)
        }

        func string() throws(PluginError) -> String {
            guard let string = value.string else { throw wrongType(expected: .string) }
            return string
        }

        /// A string that must be the spelling of one of `options`; `make` turns
        /// the spelling into the option, the options' descriptions list the choices.
        func oneOf<Option: CustomStringConvertible>(
            _ options: [Option], _ make: (String) -> Option?
        ) throws(PluginError) -> Option {
            let spelling = try string()
            guard let option = make(spelling) else {
                let choices = options.map { "\"\($0)\"" }.joined(separator: ", ")
                throw invalid("must be one of \(choices), found \(TOMLText.quoted(spelling))")
            }
            return option
        }

        /// An array of strings, e.g. `requires = ["db", "cache"]`.
        func strings() throws(PluginError) -> [String] {
            guard let array = value.array else { throw wrongType(expected: .array) }
            var strings: [String] = []
            for element in array {
                guard let string = element.string else {
                    throw invalid("must be an array of strings, found \(TOMLText.withArticle(element.type)) in it")
                }
                strings.append(string)
            }
            return strings
        }

        func table() throws(PluginError) -> TOMLTable {
            guard let table = value.table else { throw wrongType(expected: .table) }
            return table
        }

        /// The table flattened for `svc_host.config`, whose plugins see one flat
        /// list of text settings: nested tables become dotted names, and values
        /// other than strings keep their TOML spelling so a plugin can parse them.
        func settings() throws(PluginError) -> [String: String] {
            var settings: [String: String] = [:]
            try flatten(table(), prefix: "", into: &settings)
            return settings
        }

        private func flatten(_ table: TOMLTable, prefix: String, into settings: inout [String: String]) throws(PluginError) {
            for (name, element) in table {
                let setting = prefix + name
                if let nested = element.table {
                    try flatten(nested, prefix: setting + ".", into: &settings)
                    continue
                }
                let text = element.type == .string ? element.string ?? "" : TOMLText.inline(element)
                // A quoted key with a dot ("a.b" = 1) and a nested table ([config.a]
                // b = 2) flatten to the same name; keeping either would hide the other.
                guard settings.updateValue(text, forKey: setting) == nil else {
                    throw invalid("has two settings named '\(setting)' once nested tables are flattened")
                }
            }
        }

        private func wrongType(expected: TOMLType) -> PluginError {
            invalid("must be \(TOMLText.withArticle(expected)), found \(TOMLText.withArticle(value.type))")
        }

        private func invalid(_ problem: String) -> PluginError {
            PluginError(.invalidConfiguration, file: file, reason: "key '\(key)' \(problem)")
        }
    }
}

extension SidecarFile {
    /// Spells TOML values as they would be written in a file.
    ///
    /// TOMLKit's own rendering is not used: it breaks long arrays over several
    /// lines, prints `0.1` as `0.10000000000000001`, prefers 'literal' strings,
    /// keeps hexadecimal spellings and writes a local date-time as UTC (`Z`).
    enum TOMLText {
        static func inline(_ value: any TOMLValueConvertible) -> String {
            // Each accessor matches the type switched on, so none is nil here.
            switch value.type {
            case .string: quoted(value.string!)
            case .int: String(value.int!)
            case .double: float(value.double!)
            case .bool: String(value.bool!)
            case .date: date(value.date!)
            case .time: time(value.time!)
            case .dateTime: dateTime(value.dateTime!)
            case .array: "[" + value.array!.map(inline).joined(separator: ", ") + "]"
            case .table: inlineTable(value.table!)
            }
        }

        /// A basic string with the escapes TOML requires.
        static func quoted(_ string: String) -> String {
            var text = "\""
            for scalar in string.unicodeScalars {
                switch scalar {
                case "\"": text += "\\\""
                case "\\": text += "\\\\"
                case "\u{08}": text += "\\b"
                case "\t": text += "\\t"
                case "\n": text += "\\n"
                case "\u{0C}": text += "\\f"
                case "\r": text += "\\r"
                case "\u{00}"..."\u{1F}", "\u{7F}":
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: text.unicodeScalars.append(scalar)
                }
            }
            return text + "\""
        }

        static func withArticle(_ type: TOMLType) -> String {
            switch type {
            case .int, .array: "an \(type)"
            case .bool: "a boolean"
            default: "a \(type)"
            }
        }

        /// Swift's shortest round-trip spelling is also valid TOML, including
        /// `inf`, `-inf`, `nan` and exponents such as `1e+20`.
        private static func float(_ double: Double) -> String {
            double.description
        }

        private static func inlineTable(_ table: TOMLTable) -> String {
            let pairs = table.map { name, value in "\(key(name)) = \(inline(value))" }
            return pairs.isEmpty ? "{}" : "{ " + pairs.joined(separator: ", ") + " }"
        }

        private static func key(_ name: String) -> String {
            let bare = !name.isEmpty && name.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-"
            }
            return bare ? name : quoted(name)
        }

        private static func date(_ date: TOMLDate) -> String {
            "\(padded(date.year, 4))-\(padded(date.month, 2))-\(padded(date.day, 2))"
        }

        private static func time(_ time: TOMLTime) -> String {
            var text = "\(padded(time.hour, 2)):\(padded(time.minute, 2)):\(padded(time.second, 2))"
            if time.nanoSecond > 0 {
                var fraction = padded(time.nanoSecond, 9)
                while fraction.hasSuffix("0") { fraction.removeLast() }
                text += "." + fraction
            }
            return text
        }

        private static func dateTime(_ dateTime: TOMLDateTime) -> String {
            let local = date(dateTime.date) + "T" + time(dateTime.time)
            guard let minutes = dateTime.offset?.offset else { return local }
            if minutes == 0 { return local + "Z" }
            let sign = minutes < 0 ? "-" : "+"
            return local + sign + padded(abs(minutes) / 60, 2) + ":" + padded(abs(minutes) % 60, 2)
        }

        private static func padded(_ number: Int, _ width: Int) -> String {
            let digits = String(number)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
    }
}
