import Foundation
import Logging
import Testing
@testable import ServiceHostControl

#if canImport(Glibc)
import Glibc
#endif

/// `--log-format json|journal`: lines machines can read, with lifecycle
/// events as stable fields, and no way for a plugin to forge a line.
@Suite("Log formats")
struct LogFormatTests {
    private static let forgery = #"x\n{\"time\":\"2026-01-01T00:00:00.000000Z\",\"level\":\"critical\",\"message\":\"forged\",\"origin\":\"host\"}"#

    private func runBriefly(format: String) async throws -> String {
        let folder = try PluginFolder()
        try await folder.add(as: "Fine.so", sidecar: "interval_ms = 20\n[config]\nwarn_at = 1\ngreeting = \"\(Self.forgery)\"\n")
        try await folder.add(as: "Flaky.so", sidecar: "interval_ms = 5\nbackoff_initial_ms = 1\nbackoff_max_ms = 1\n[config]\nfail_after = 1\n")
        let host = try HostProcess(["run", "--plugins", folder.path, "--log-format", format])
        try await host.waitForOutput("restarting", count: 2)
        try await host.waitForOutput("error at 1")
        host.send(SIGTERM)
        #expect(try await host.waitForExit() == 0)
        return host.outputText
    }

    @Test func everyJSONLineIsOneObjectWithStableFields() async throws {
        let output = try await runBriefly(format: "json")
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.count > 8)
        var objects: [[String: String]] = []
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
            let parsed = try #require(object, "not a JSON object of strings: \(line)")
            for key in ["time", "level", "message", "origin"] { #expect(parsed[key] != nil, "\(key) in \(line)") }
            let time = try #require(parsed["time"])
            #expect(time.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z/) != nil, "\(time)")
            objects.append(parsed)
        }
        #expect(!objects.contains { $0["message"] == "forged" }, "a plugin cannot forge a line")
        let create = try #require(objects.first { $0["service"] == "Fine" && $0["message"]?.hasPrefix("create name=Fine") == true })
        #expect(create["origin"] == "plugin")
        // The plugin's line break stays inside its message, escaped.
        #expect(create["message"]?.contains(#"greeting=x\n{"time":"#) == true, "\(create)")
        let started = try #require(objects.first { $0["service"] == "Fine" && $0["event"] == "started" })
        #expect(started["start"] == "1" && started["version"] == "1.0.0" && started["origin"] == "host" && started["level"] == "info")
        let stopped = try #require(objects.first { $0["service"] == "Flaky" && $0["event"] == "stopped" && $0["reason"] == "error" })
        #expect(stopped["code"] == "-5" && stopped["phase"] == "loop" && stopped["level"] == "error")
        let restarting = try #require(objects.first { $0["service"] == "Flaky" && $0["event"] == "restarting" })
        #expect(restarting["reason"] == "error" && restarting["attempt"] != nil && restarting["delay_ms"] != nil)
        #expect(objects.contains { $0["level"] == "warning" && $0["message"] == "warn at 1" && $0["origin"] == "plugin" })
        #expect(objects.contains { $0["service"] == "Fine" && $0["event"] == "stopped" && $0["reason"] == "ordered" })
    }

    @Test func journalLinesCarryTheirSyslogPriority() async throws {
        let output = try await runBriefly(format: "JOURNAL")
        let lines = output.split(separator: "\n").map(String.init)
        for line in lines {
            #expect(line.wholeMatch(of: /<[2-7]>.*/) != nil, "\(line)")
        }
        #expect(lines.contains("<4>Fine: warn at 1"))
        #expect(lines.contains("<3>Fine: error at 1"))
        #expect(lines.contains { $0.hasPrefix("<6>Fine: started (start #1, version 1.0.0) [") && $0.contains("event=started") })
        #expect(lines.contains { $0.hasPrefix("<5>") && $0.contains("SIGTERM: stopping every service") })
        #expect(lines.contains { $0.hasPrefix("<3>Flaky: stopped: failed") })
    }

    @Test func anUnknownFormatIsAUsageError() async throws {
        let run = try await HostProcess.run(["run", "--plugins", "/nonexistent", "--log-format", "xml"])
        #expect(run.status == 2)
        #expect(run.output.contains("'xml' is not a log format; use one of text, json, journal"), "\(run.output)")
    }

    @Test func theJournalIsTheDefaultOnlyWhenStandardErrorIsTheJournalsStream() throws {
        var info = stat()
        try #require(fstat(STDERR_FILENO, &info) == 0)
        #expect(LogFormat.default(environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino)"]) == .journal)
        #expect(LogFormat.default(environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino + 1)"]) == .text)
        #expect(LogFormat.default(environment: ["JOURNAL_STREAM": "garbage"]) == .text)
        #expect(LogFormat.default(environment: [:]) == .text)
    }

    @Test func jsonEscapesEveryControlCharacterAndKeepsFieldsFlat() throws {
        let line = LogLineHandler.json(level: .error, message: "a\"b\\c\nd\u{1}e\u{2028}", fields: ["service": "S\"1", "origin": "plugin", "k": "v\n"],
                                       time: Date(timeIntervalSince1970: 1_796_180_364.25))
        #expect(line == #"{"time":"2026-12-02T02:59:24.250000Z","level":"error","message":"a\"b\\c\nd\u0001e\u2028","origin":"plugin","service":"S\"1","k":"v\n"}"# + "\n")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["message"] == "a\"b\\c\nd\u{1}e\u{2028}")
    }

    @Test func priorities() {
        #expect(Logger.Level.allCases.map(LogLineHandler.priority(of:)) == [7, 7, 6, 5, 4, 3, 2])
    }
}
