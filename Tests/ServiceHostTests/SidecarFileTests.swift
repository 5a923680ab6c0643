import Foundation
import Testing
@testable import ServiceHost

@Suite struct SidecarFileTests {
    static let file = "/srv/plugins/echo.toml"

    /// Parses `text` expecting it to fail, and returns the error.
    private func failure(_ text: String, file: String = file,
                         sourceLocation: SourceLocation = #_sourceLocation) -> PluginError? {
        do {
            let configuration = try SidecarFile.parse(text, file: file)
            Issue.record("expected an error, parsed \(configuration)", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    private func settings(_ config: String) throws -> [String: String] {
        try SidecarFile.parse("[config]\n" + config, file: Self.file).settings
    }

    // MARK: - Defaults and keys

    @Test(arguments: ["", "\n\n", "# only a comment\n", "   \t\n# two\n# comments\n"])
    func emptyFileGivesTheDefaults(text: String) throws {
        #expect(try SidecarFile.parse(text, file: Self.file) == ServiceConfiguration())
    }

    @Test func readsEveryKey() throws {
        let text = """
            restart = "on-failure"
            delay_ms = 250
            interval_ms = 1_000
            retries = 5

            [config]
            greeting = "hello"
            """
        let configuration = try SidecarFile.parse(text, file: Self.file)
        #expect(configuration == ServiceConfiguration(
            restart: .onFailure,
            delay: .milliseconds(250),
            interval: .seconds(1),
            retries: 5,
            settings: ["greeting": "hello"]
        ))
    }

    @Test func readsEverySupervisionKey() throws {
        let text = """
            backoff_initial_ms = 50
            backoff_max_ms = 2000
            healthy_after_ms = 500
            restart_limit = 3
            restart_window_ms = 10000
            isolation = "process"
            stop_timeout_ms = 300
            watchdog_ms = 40
            start_timeout_ms = 70
            requires = ["db", "cache"]
            """
        let configuration = try SidecarFile.parse(text, file: Self.file)
        #expect(configuration == ServiceConfiguration(
            backoffInitial: .milliseconds(50), backoffMax: .seconds(2), healthyAfter: .milliseconds(500),
            restartLimit: 3, restartWindow: .seconds(10), isolation: .process, stopTimeout: .milliseconds(300),
            watchdog: .milliseconds(40), startTimeout: .milliseconds(70), requires: ["db", "cache"]
        ))
    }

    @Test func zeroTurnsTheWatchdogAndStartTimeoutOff() throws {
        let configuration = try SidecarFile.parse("watchdog_ms = 0\nstart_timeout_ms = 0\n", file: Self.file)
        #expect(configuration.watchdog == nil)
        #expect(configuration.startTimeout == nil)
    }

    @Test func rejectsAnUnknownIsolation() throws {
        let error = try #require(failure("isolation = \"vm\""))
        #expect(error.reason == "key 'isolation' must be one of \"thread\", \"process\", found \"vm\"")
    }

    @Test func rejectsRequiresThatIsNotAnArrayOfStrings() throws {
        #expect(try #require(failure("requires = \"db\"")).reason == "key 'requires' must be an array, found a string")
        #expect(try #require(failure("requires = [\"db\", 3]")).reason == "key 'requires' must be an array of strings, found an integer in it")
    }

    @Test(arguments: [
        ("always", RestartPolicy.always),
        ("on-failure", .onFailure),
        ("never", .never),
    ])
    func readsEveryRestartPolicy(spelling: String, policy: RestartPolicy) throws {
        let configuration = try SidecarFile.parse("restart = \"\(spelling)\"", file: Self.file)
        #expect(configuration.restart == policy)
    }

    @Test(arguments: [(-1, nil), (0, 0), (1, 1), (1_000_000, 1_000_000)] as [(Int, Int?)])
    func readsRetriesWithMinusOneAsUnlimited(value: Int, retries: Int?) throws {
        #expect(try SidecarFile.parse("retries = \(value)", file: Self.file).retries == retries)
    }

    @Test func acceptsZeroDurations() throws {
        let configuration = try SidecarFile.parse("delay_ms = 0\ninterval_ms = 0", file: Self.file)
        #expect(configuration.delay == .zero)
        #expect(configuration.interval == .zero)
    }

    @Test func leavesKeysThatAreNotGivenAtTheirDefaults() throws {
        let configuration = try SidecarFile.parse("interval_ms = 20", file: Self.file)
        #expect(configuration == ServiceConfiguration(interval: .milliseconds(20)))
    }

    @Test func acceptsWindowsLineEndingsAndAByteOrderMark() throws {
        let configuration = try SidecarFile.parse("\u{FEFF}retries = 2\r\n[config]\r\na = \"b\"\r\n", file: Self.file)
        #expect(configuration == ServiceConfiguration(retries: 2, settings: ["a": "b"]))
    }

    @Test func knownKeysAreTheDocumentedOnes() {
        #expect(Set(SidecarFile.keys.keys) == [
            "backoff_initial_ms", "backoff_max_ms", "config", "delay_ms", "healthy_after_ms",
            "interval_ms", "isolation", "reload", "requires", "restart", "restart_limit", "restart_window_ms",
            "retries", "start_timeout_ms", "stop_timeout_ms", "watchdog_ms",
        ])
    }

    // MARK: - Flattening [config]

    @Test func emptyConfigTableGivesNoSettings() throws {
        #expect(try settings("") == [:])
    }

    @Test func flattensNestedTablesToDottedKeys() throws {
        let settings = try settings("""
            name = "echo"
            db.host = "localhost"
            db.port = 5432
            [config.db.pool]
            size = 4
            [config.empty]
            """)
        #expect(settings == [
            "name": "echo",
            "db.host": "localhost",
            "db.port": "5432",
            "db.pool.size": "4",
        ])
    }

    @Test func inlineConfigTableIsFlattenedToo() throws {
        let configuration = try SidecarFile.parse("config = { a = 1, b = { c = true } }", file: Self.file)
        #expect(configuration.settings == ["a": "1", "b.c": "true"])
    }

    @Test(arguments: [
        ("42", "42"),
        ("-17", "-17"),
        ("+5", "5"),
        ("1_000", "1000"),
        ("0xff", "255"),
        ("0o755", "493"),
        ("0b101", "5"),
        ("1.5", "1.5"),
        ("3.0", "3.0"),
        ("0.1", "0.1"),
        ("-2.5e-3", "-0.0025"),
        ("6.02e23", "6.02e+23"),
        ("inf", "inf"),
        ("-inf", "-inf"),
        ("nan", "nan"),
        ("true", "true"),
        ("false", "false"),
        ("1979-05-27", "1979-05-27"),
        ("07:32:00", "07:32:00"),
        ("07:32:00.5", "07:32:00.5"),
        ("1979-05-27T07:32:00", "1979-05-27T07:32:00"),
        ("1979-05-27 07:32:00Z", "1979-05-27T07:32:00Z"),
        ("1979-05-27T00:32:00.999999-07:30", "1979-05-27T00:32:00.999999-07:30"),
        ("1979-05-27T00:32:00+05:45", "1979-05-27T00:32:00+05:45"),
    ])
    func spellsScalarsAsInTOML(written: String, expected: String) throws {
        #expect(try settings("value = \(written)") == ["value": expected])
    }

    @Test(arguments: [
        (#""plain""#, "plain"),
        (#""""#, ""),
        (#""say \"hi\"""#, #"say "hi""#),
        (#""tab\there""#, "tab\there"),
        (#""two\nlines""#, "two\nlines"),
        (#""back\\slash""#, #"back\slash"#),
        (#""caf\u00E9 \U0001F600""#, "café 😀"),
        (#"'C:\Users\literal'"#, #"C:\Users\literal"#),
        ("\"\"\"\nfirst\nsecond\"\"\"", "first\nsecond"),
        ("'''\nraw \\n kept'''", #"raw \n kept"#),
    ])
    func givesStringsWithoutQuotes(written: String, expected: String) throws {
        #expect(try settings("value = \(written)") == ["value": expected])
    }

    @Test(arguments: [
        ("[1, 2, \"a\"]", #"[1, 2, "a"]"#),
        ("[]", "[]"),
        ("[ 1.5, true, 0.1 ]", "[1.5, true, 0.1]"),
        ("[[1, 2], [\"x\"]]", #"[[1, 2], ["x"]]"#),
        (#"['lit', "q\"uote", "new\nline", "tab\t", "\u0001"]"#, #"["lit", "q\"uote", "new\nline", "tab\t", "\u0001"]"#),
        ("[1979-05-27, 07:32:00]", "[1979-05-27, 07:32:00]"),
        ("[{ a = 1, b = \"x\" }, {}]", #"[{ a = 1, b = "x" }, {}]"#),
        ("[{ \"odd key\" = 1 }]", #"[{ "odd key" = 1 }]"#),
        ("[\n  1,\n  2,\n  3,\n]", "[1, 2, 3]"),
    ])
    func spellsArraysInline(written: String, expected: String) throws {
        #expect(try settings("value = \(written)") == ["value": expected])
    }

    @Test func spellsArraysOfTablesInline() throws {
        let settings = try settings("""
            [[config.servers]]
            host = "a"
            [[config.servers]]
            host = "b"
            port = 80
            """)
        #expect(settings == ["servers": #"[{ host = "a" }, { host = "b", port = 80 }]"#])
    }

    @Test func keepsSpellingsOfLongArraysOnOneLine() throws {
        let numbers = (1...40).map(String.init).joined(separator: ", ")
        #expect(try settings("value = [\(numbers)]") == ["value": "[\(numbers)]"])
    }

    // MARK: - Errors

    @Test func reportsMalformedTOMLWithItsPosition() throws {
        let text = """
            restart = "always"

            retries = = 3
            """
        let error = try #require(failure(text))
        #expect(error.code == .invalidConfiguration)
        #expect(error.file == Self.file)
        #expect(error.reason.hasPrefix("malformed TOML at line 3, column "))
        #expect(error.description.hasPrefix("\(Self.file): malformed TOML at line 3, column "))
        // The parser's own words follow the position.
        #expect(error.reason.contains(": Error while parsing "))
    }

    @Test(arguments: [
        ("a = 1\nb = \nc = 2", 2),
        ("a = 1\na = 2", 2),
        ("x = \"unterminated", 1),
        ("\n\n\n[config\n", 4),
        ("x = \"\\q\"", 1),
        ("x = 99999999999999999999", 1),
    ])
    func reportsTheLineOfEachMalformedFile(text: String, line: Int) throws {
        let error = try #require(failure(text))
        #expect(error.code == .invalidConfiguration)
        #expect(error.reason.hasPrefix("malformed TOML at line \(line), column "))
    }

    @Test func rejectsANulCharacterInsteadOfReadingUpToIt() throws {
        let error = try #require(failure("retries = 1\nx = 2\u{0}garbage"))
        #expect(error.reason == "malformed TOML at line 2, column 6: NUL character in the file")
    }

    @Test func reportsAnUnknownKeyWithTheKnownOnes() throws {
        let error = try #require(failure("restrat = \"always\""))
        #expect(error.code == .invalidConfiguration)
        #expect(error.reason == "unknown key 'restrat' (did you mean 'restart'? known keys: backoff_initial_ms, backoff_max_ms, config, delay_ms, healthy_after_ms, interval_ms, isolation, reload, requires, restart, restart_limit, restart_window_ms, retries, start_timeout_ms, stop_timeout_ms, watchdog_ms)")
        #expect(error.description.contains(Self.file))
        #expect(error.description.contains("'restrat'"))
    }

    @Test func reportsAnUnknownTableAsAnUnknownKey() throws {
        let error = try #require(failure("[settings]\na = 1"))
        #expect(error.reason.hasPrefix("unknown key 'settings' "))
    }

    @Test(arguments: [
        ("delay_ms = \"100\"", "key 'delay_ms' must be an integer, found a string"),
        ("interval_ms = 1.5", "key 'interval_ms' must be an integer, found a floating-point number"),
        ("retries = true", "key 'retries' must be an integer, found a boolean"),
        ("retries = [1]", "key 'retries' must be an integer, found an array"),
        ("delay_ms = 1979-05-27", "key 'delay_ms' must be an integer, found a date"),
        ("delay_ms = 07:00:00", "key 'delay_ms' must be an integer, found a time"),
        ("delay_ms = 1979-05-27T07:00:00Z", "key 'delay_ms' must be an integer, found a date-time"),
        ("restart = 1", "key 'restart' must be a string, found an integer"),
        ("restart = { on = \"failure\" }", "key 'restart' must be a string, found a table"),
        ("config = \"a=b\"", "key 'config' must be a table, found a string"),
        ("config = [1, 2]", "key 'config' must be a table, found an array"),
    ])
    func reportsAWrongType(text: String, reason: String) throws {
        let error = try #require(failure(text))
        #expect(error.code == .invalidConfiguration)
        #expect(error.reason == reason)
        #expect(error.description == "\(Self.file): \(reason)")
    }

    @Test(arguments: [
        ("retries = -5", "key 'retries' must be -1 (unlimited) or more, found -5"),
        ("retries = -2", "key 'retries' must be -1 (unlimited) or more, found -2"),
        ("delay_ms = -1", "key 'delay_ms' must be 0 or more, found -1"),
        ("interval_ms = -9223372036854775808", "key 'interval_ms' must be 0 or more, found -9223372036854775808"),
        // Once accepted; a delay this long overflowed the host's deadline arithmetic.
        ("delay_ms = 9223372036854775807", "key 'delay_ms' must be at most 2147483647 (about 24.8 days), found 9223372036854775807"),
        ("watchdog_ms = 10000000000000", "key 'watchdog_ms' must be at most 2147483647 (about 24.8 days), found 10000000000000"),
        ("backoff_max_ms = 2147483648", "key 'backoff_max_ms' must be at most 2147483647 (about 24.8 days), found 2147483648"),
    ])
    func reportsAnOutOfRangeInteger(text: String, reason: String) throws {
        let error = try #require(failure(text))
        #expect(error.code == .invalidConfiguration)
        #expect(error.reason == reason)
        #expect(error.description.contains(Self.file))
    }

    @Test(arguments: [
        ("sometimes", #""sometimes""#),
        ("Always", #""Always""#),
        ("", #""""#),
        ("on\"failure", #""on\"failure""#),
    ])
    func reportsAnUnknownRestartPolicy(value: String, quoted: String) throws {
        let escaped = value.replacingOccurrences(of: "\"", with: "\\\"")
        let error = try #require(failure("restart = \"\(escaped)\""))
        #expect(error.code == .invalidConfiguration)
        #expect(error.reason == #"key 'restart' must be one of "always", "on-failure", "never", found "# + quoted)
    }

    @Test func reportsSettingsThatFlattenToTheSameName() throws {
        let error = try #require(failure("""
            [config]
            "db.port" = 1
            [config.db]
            port = 2
            """))
        #expect(error.code == .invalidConfiguration)
        #expect(error.reason == "key 'config' has two settings named 'db.port' once nested tables are flattened")
    }

    @Test func reportsTheFirstProblemInKeyOrder() throws {
        // toml++ sorts keys, so the report does not depend on the file's order.
        let error = try #require(failure("zzz = 1\nretries = -7\naaa = 2"))
        #expect(error.reason.hasPrefix("unknown key 'aaa' "))
    }

    // MARK: - load(path:)

    @Test func loadsAFile() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("echo.toml").path
        try "restart = \"never\"\n[config]\nport = 8080\n".write(toFile: path, atomically: true, encoding: .utf8)
        let configuration = try SidecarFile.load(path: path)
        #expect(configuration == ServiceConfiguration(restart: .never, settings: ["port": "8080"]))
    }

    @Test func loadsAnEmptyFile() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("echo.toml").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        #expect(try SidecarFile.load(path: path) == ServiceConfiguration())
    }

    @Test func loadsAFileLargerThanOneRead() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("big.toml").path
        let lines = (0..<5_000).map { "key\($0) = \"value number \($0)\"" }
        try ("[config]\n" + lines.joined(separator: "\n")).write(toFile: path, atomically: true, encoding: .utf8)
        let configuration = try SidecarFile.load(path: path)
        #expect(configuration.settings.count == 5_000)
        #expect(configuration.settings["key4999"] == "value number 4999")
    }

    @Test func reportsAMissingFileAsNotFound() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("absent.toml").path
        let error = try #require(loadFailure(path))
        #expect(error.code == .notFound)
        #expect(error.file == path)
        #expect(error.description.hasPrefix("\(path): "))
    }

    @Test func reportsADirectoryAsUnreadable() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("echo.toml").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        let error = try #require(loadFailure(path))
        #expect(error.code == .unreadable)
        #expect(error.file == path)
        #expect(error.reason == "is not a regular file (a directory)")
    }

    @Test func reportsAFIFOAsUnreadableWithoutBlocking() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("echo.toml").path
        try #require(mkfifo(path, 0o600) == 0)
        let error = try #require(loadFailure(path))
        #expect(error.code == .unreadable)
        #expect(error.reason == "is not a regular file (a FIFO)")
    }

    @Test(.disabled(if: geteuid() == 0, "root reads files whatever their permissions"))
    func reportsAFileWithoutReadPermissionAsUnreadable() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("echo.toml").path
        try "retries = 1".write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: path)
        let error = try #require(loadFailure(path))
        #expect(error.code == .unreadable)
        #expect(error.file == path)
        #expect(error.reason.hasPrefix("cannot be opened: "))
    }

    @Test func reportsAPathThroughAFileAsUnreadable() throws {
        let directory = try TemporaryDirectory("sidecar")
        let file = directory.file("plain")
        try "x".write(to: file, atomically: true, encoding: .utf8)
        let path = file.appendingPathComponent("echo.toml").path
        let error = try #require(loadFailure(path))
        #expect(error.code == .unreadable)
        #expect(error.reason.hasPrefix("cannot be opened: "))
    }

    @Test func reportsInvalidUTF8AsInvalidConfiguration() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("echo.toml").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data([0x61, 0x20, 0x3D, 0x20, 0x22, 0xFF, 0x22])))
        let error = try #require(loadFailure(path))
        #expect(error.code == .invalidConfiguration)
        #expect(error.file == path)
        #expect(error.reason == "not valid UTF-8 text")
    }

    @Test func namesTheLoadedFileInParseErrors() throws {
        let directory = try TemporaryDirectory("sidecar")
        let path = directory.file("echo.toml").path
        try "retries = \"many\"".write(toFile: path, atomically: true, encoding: .utf8)
        let error = try #require(loadFailure(path))
        #expect(error.code == .invalidConfiguration)
        #expect(error.description == "\(path): key 'retries' must be an integer, found a string")
    }

    private func loadFailure(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) -> PluginError? {
        do {
            let configuration = try SidecarFile.load(path: path)
            Issue.record("expected an error, loaded \(configuration)", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }
}
