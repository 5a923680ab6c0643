import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `servicehost check` is `nginx -t` for a plugins directory: it refuses
/// exactly what `run` would refuse, and never loads a plugin itself.
@Suite("servicehost check")
struct CheckCommandTests {
    @Test func aGoodDirectoryExitsZero() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "A.so", sidecar: "interval_ms = 10\n")
        try await folder.add("noop.c", as: "B.so", sidecar: "requires = [\"A\"]\n")
        let (status, output) = try await HostProcess.run(["check", folder.path])
        #expect(status == 0, "\(output)")
        #expect(output.contains("\(folder.path)/A.so: OK, version 1.0.0"))
        #expect(output.contains("\(folder.path)/B.so: OK, version noop"))
    }

    @Test(arguments: [
        ("CONSTRUCTOR_FAULT=1", "constructor killed by SIGSEGV while loading"),
        ("CONSTRUCTOR_FAULT=2", "exited with status 7 while loading"),
    ])
    func aCrashingConstructorIsReportedAndCheckSurvives(define: String, reason: String) async throws {
        let folder = try PluginFolder()
        let bad = try await folder.add("constructor.c", as: "Bad.so", defines: [define])
        let good = try await folder.add(as: "Good.so")
        let (status, output) = try await HostProcess.run(["check", bad, good])
        #expect(status == 1, "\(output)")
        #expect(output.contains("\(bad): FAILED [load failed]: \(reason)"), "\(output)")
        #expect(output.contains("\(good): OK, version 1.0.0"), "\(output)")
    }

    @Test func aHangingConstructorTimesOutAtStartTimeout() async throws {
        let folder = try PluginFolder()
        let bad = try await folder.add("constructor.c", as: "Slow.so", defines: ["CONSTRUCTOR_FAULT=3"],
                                       sidecar: "start_timeout_ms = 200\n")
        let (status, output) = try await HostProcess.run(["check", folder.path])
        #expect(status == 1, "\(output)")
        #expect(output.contains("\(bad): FAILED [load failed]: did not finish loading within 200 ms"), "\(output)")
    }

    @Test func aSidecarTypoGetsASuggestion() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "A.so", sidecar: "intervl_ms = 10\n")
        let (status, output) = try await HostProcess.run(["check", folder.path])
        #expect(status == 1, "\(output)")
        #expect(output.contains("\(folder.path)/A.toml: FAILED [invalid configuration]: unknown key 'intervl_ms' (did you mean 'interval_ms'?"), "\(output)")
    }

    @Test func aMalformedSidecarNamesItsLine() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "A.so", sidecar: "interval_ms = 10\nrestart = \n")
        let (status, output) = try await HostProcess.run(["check", folder.path])
        #expect(status == 1, "\(output)")
        #expect(output.contains("\(folder.path)/A.toml: FAILED [invalid configuration]: malformed TOML at line 2"), "\(output)")
    }

    @Test func requirementsThatCycleOrNameNobodyAreRefused() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "A.so", sidecar: "requires = [\"B\"]\n")
        try await folder.add(as: "B.so", sidecar: "requires = [\"A\"]\n")
        try await folder.add(as: "C.so", sidecar: "requires = [\"Nobody\"]\n")
        let (status, output) = try await HostProcess.run(["check", folder.path])
        #expect(status == 1, "\(output)")
        #expect(output.contains("\(folder.path)/A.so: FAILED [invalid configuration]: requires cycle A -> B -> A"), "\(output)")
        #expect(output.contains("\(folder.path)/C.so: FAILED [invalid configuration]: requires 'Nobody', which no plugin in \(folder.path) provides"), "\(output)")
    }

    @Test func duplicateNamesAndUnsafeFilesAreRefused() async throws {
        let folder = try PluginFolder()
        try await folder.add(as: "A.so")
        try await folder.add(as: "libA.so")
        let writable = try await folder.add(as: "W.so")
        chmod(writable, 0o666)
        let (status, output) = try await HostProcess.run(["check", folder.path])
        #expect(status == 1, "\(output)")
        #expect(output.contains("\(folder.path)/libA.so: FAILED [duplicate name]"), "\(output)")
        #expect(output.contains("\(writable): FAILED [insecure]"), "\(output)")
    }

    @Test func missingSymbolsGetAHintForTheTwoCommonMistakes() async throws {
        let folder = try PluginFolder()
        let mangled = try await folder.add("symbol_mistakes.c", as: "Mangled.so", defines: ["MISTAKE=1"])
        let hidden = try await folder.add("symbol_mistakes.c", as: "Hidden.so", defines: ["MISTAKE=2"])
        let (status, output) = try await HostProcess.run(["check", folder.path])
        #expect(status == 1, "\(output)")
        #expect(output.contains("\(mangled): FAILED [missing symbol]: does not export the required function 'svc_abi_version'; found the C++-mangled symbol '_Z15svc_abi_versionv': declare it extern \"C\" or use SVC_EXPORT"), "\(output)")
        #expect(output.contains("\(hidden): FAILED [missing symbol]: does not export the required function 'svc_loop'; 'svc_loop' is defined but not exported (hidden or static): make it public / visible"), "\(output)")
    }
}
