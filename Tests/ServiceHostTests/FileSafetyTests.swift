import Foundation
import Testing
@testable import ServiceHost

#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileSafetyTests {
    static let tail = "refusing to load it — fix with"
    static let directoryTail = "refusing to load plugins from it — fix with"
    static let escape = "or run with --allow-insecure-plugins"

    // MARK: - Helpers

    /// Creates `name` in `directory` with exactly `mode` and returns its path.
    private func file(_ name: String, in directory: TemporaryDirectory, mode: mode_t,
                      sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let path = directory.file(name).path
        try #require(FileManager.default.createFile(atPath: path, contents: Data("x".utf8)),
                     sourceLocation: sourceLocation)
        try #require(chmod(path, mode) == 0, "chmod \(path): \(Errno(errno))", sourceLocation: sourceLocation)
        return path
    }

    /// Creates the directory `name` in `directory` with exactly `mode` and returns its path.
    private func subdirectory(_ name: String, in directory: TemporaryDirectory, mode: mode_t,
                              sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let path = directory.file(name).path
        try #require(mkdir(path, 0o700) == 0, "mkdir \(path): \(Errno(errno))", sourceLocation: sourceLocation)
        try #require(chmod(path, mode) == 0, "chmod \(path): \(Errno(errno))", sourceLocation: sourceLocation)
        return path
    }

    /// Makes `name` in `directory` a symbolic link to `target` and returns the link's path.
    private func link(_ name: String, in directory: TemporaryDirectory, to target: String,
                      sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let path = directory.file(name).path
        try #require(symlink(target, path) == 0, "symlink \(path): \(Errno(errno))", sourceLocation: sourceLocation)
        return path
    }

    /// Checks `path`, expecting a refusal, and returns the error.
    private func refusal(_ path: String, as kind: FileSafety.Kind,
                         sourceLocation: SourceLocation = #_sourceLocation) -> PluginError? {
        do {
            try FileSafety.check(path, as: kind)
            Issue.record("expected \(path) to be refused as \(kind)", sourceLocation: sourceLocation)
            return nil
        } catch {
            #expect(error.code == .insecure, sourceLocation: sourceLocation)
            #expect(error.file == path, sourceLocation: sourceLocation)
            return error
        }
    }

    /// The fully resolved path, computed independently of `FileSafety` (`/tmp` may itself be a link).
    private func resolved(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    // MARK: - Plugin and sidecar files

    @Test(arguments: [FileSafety.Kind.plugin, .sidecar], [0o644, 0o600, 0o755, 0o444, 0o400] as [mode_t])
    func acceptsFilesOnlyTheOwnerCanWrite(kind: FileSafety.Kind, mode: mode_t) throws {
        let directory = try TemporaryDirectory()
        let path = try file("libGood.so", in: directory, mode: mode)
        try FileSafety.check(path, as: kind)
    }

    @Test(arguments: [FileSafety.Kind.plugin, .sidecar])
    func refusesAFileWritableByOthers(kind: FileSafety.Kind) throws {
        let directory = try TemporaryDirectory()
        let path = try file("libOpen.so", in: directory, mode: 0o646)
        let error = refusal(path, as: kind)
        #expect(error?.reason == "is writable by others (mode 0646); \(Self.tail) chmod o-w, \(Self.escape)")
    }

    @Test(arguments: [FileSafety.Kind.plugin, .sidecar])
    func refusesAFileWritableByItsGroup(kind: FileSafety.Kind) throws {
        let directory = try TemporaryDirectory()
        let path = try file("libShared.so", in: directory, mode: 0o664)
        let error = refusal(path, as: kind)
        #expect(error?.reason == "is writable by its group (mode 0664); \(Self.tail) chmod g-w, \(Self.escape)")
    }

    @Test func refusesAFileWritableByEveryone() throws {
        let directory = try TemporaryDirectory()
        let path = try file("libAll.so", in: directory, mode: 0o666)
        let error = refusal(path, as: .plugin)
        #expect(error?.reason
            == "is writable by its group and by others (mode 0666); \(Self.tail) chmod go-w, \(Self.escape)")
        #expect(error?.description == "\(path): \(error?.reason ?? "")")
    }

    // MARK: - The plugins directory

    @Test(arguments: [0o755, 0o700, 0o555, 0o711] as [mode_t])
    func acceptsADirectoryOnlyTheOwnerCanWrite(mode: mode_t) throws {
        let directory = try TemporaryDirectory()
        let path = try subdirectory("plugins", in: directory, mode: mode)
        try FileSafety.check(path, as: .directory)
    }

    @Test func refusesADirectoryWritableByEveryone() throws {
        let directory = try TemporaryDirectory()
        let path = try subdirectory("plugins", in: directory, mode: 0o777)
        let error = refusal(path, as: .directory)
        #expect(error?.reason == "plugins directory is writable by its group and by others (mode 0777); "
            + "\(Self.directoryTail) chmod go-w, \(Self.escape)")
    }

    @Test func refusesADirectoryWritableByOthers() throws {
        let directory = try TemporaryDirectory()
        let path = try subdirectory("plugins", in: directory, mode: 0o757)
        let error = refusal(path, as: .directory)
        #expect(error?.reason == "plugins directory is writable by others (mode 0757); "
            + "\(Self.directoryTail) chmod o-w, \(Self.escape)")
    }

    /// Decision: a group-writable directory is refused too. A group member
    /// could rename a file of their own over a plugin, or add a new plugin,
    /// which is exactly what refusing a group-writable plugin file prevents.
    @Test func refusesADirectoryWritableByItsGroup() throws {
        let directory = try TemporaryDirectory()
        let path = try subdirectory("plugins", in: directory, mode: 0o775)
        let error = refusal(path, as: .directory)
        #expect(error?.reason == "plugins directory is writable by its group (mode 0775); "
            + "\(Self.directoryTail) chmod g-w, \(Self.escape)")
    }

    /// Decision: a sticky world-writable directory (like /tmp) is refused. The
    /// sticky bit stops others deleting or renaming the owner's plugins, but
    /// not adding a new `*.so`, which the host would load as a new service.
    @Test func refusesAStickyDirectoryWritableByOthers() throws {
        let directory = try TemporaryDirectory()
        let everyone = try subdirectory("tmp-like", in: directory, mode: 0o1777)
        let others = try subdirectory("others", in: directory, mode: 0o1757)
        #expect(refusal(everyone, as: .directory)?.reason
            == "plugins directory is writable by its group and by others (mode 1777; the sticky bit does not "
            + "stop others adding plugins); \(Self.directoryTail) chmod go-w, \(Self.escape)")
        #expect(refusal(others, as: .directory)?.reason
            == "plugins directory is writable by others (mode 1757; the sticky bit does not stop others "
            + "adding plugins); \(Self.directoryTail) chmod o-w, \(Self.escape)")
    }

    @Test func aStickyDirectoryOnlyTheOwnerCanWriteIsAccepted() throws {
        let directory = try TemporaryDirectory()
        let path = try subdirectory("plugins", in: directory, mode: 0o1755)
        try FileSafety.check(path, as: .directory)
    }

    // MARK: - Symbolic links

    @Test func refusesALinkToAWritableFileAndNamesTheTarget() throws {
        let directory = try TemporaryDirectory()
        let target = try file("real-libOpen.so", in: directory, mode: 0o666)
        let path = try link("libOpen.so", in: directory, to: target)
        let error = refusal(path, as: .plugin)
        #expect(error?.reason == "(a link to \(resolved(target))) is writable by its group and by others "
            + "(mode 0666); \(Self.tail) chmod go-w, \(Self.escape)")
    }

    @Test func aRelativeLinkIsJudgedByItsTargetAndNamesItInFull() throws {
        let directory = try TemporaryDirectory()
        let target = try file("real.toml", in: directory, mode: 0o646)
        let path = try link("Echo.toml", in: directory, to: "real.toml")
        let error = refusal(path, as: .sidecar)
        #expect(error?.reason
            == "(a link to \(resolved(target))) is writable by others (mode 0646); \(Self.tail) chmod o-w, \(Self.escape)")
    }

    @Test func acceptsALinkToASafeFile() throws {
        let directory = try TemporaryDirectory()
        let target = try file("real-libGood.so", in: directory, mode: 0o644)
        let path = try link("libGood.so", in: directory, to: target)
        // The link itself is 0777 (lstat); only its target counts.
        try FileSafety.check(path, as: .plugin)
    }

    @Test func judgesADirectoryLinkByItsTarget() throws {
        let directory = try TemporaryDirectory()
        let good = try subdirectory("good", in: directory, mode: 0o755)
        let open = try subdirectory("open", in: directory, mode: 0o757)
        try FileSafety.check(try link("good-link", in: directory, to: good), as: .directory)
        let openLink = try link("open-link", in: directory, to: open)
        #expect(refusal(openLink, as: .directory)?.reason
            == "plugins directory (a link to \(resolved(open))) is writable by others (mode 0757); "
            + "\(Self.directoryTail) chmod o-w, \(Self.escape)")
    }

    // MARK: - Missing files are the loader's business

    @Test(arguments: [FileSafety.Kind.plugin, .sidecar, .directory])
    func aMissingPathIsNotRefused(kind: FileSafety.Kind) throws {
        let directory = try TemporaryDirectory()
        try FileSafety.check(directory.file("absent").path, as: kind)
        let dangling = try link("dangling", in: directory, to: directory.file("nowhere").path)
        try FileSafety.check(dangling, as: kind)
    }

    // MARK: - Ownership

    @Test(.enabled(if: geteuid() == 0, "needs root to chown a file to another user (nobody, uid 65534)"))
    func refusesAFileOwnedByAnotherUser() throws {
        let directory = try TemporaryDirectory()
        let plugin = try file("libTheirs.so", in: directory, mode: 0o644)
        let sidecar = try file("Theirs.toml", in: directory, mode: 0o600)
        try #require(chown(plugin, 65534, 65534) == 0, "chown: \(Errno(errno))")
        try #require(chown(sidecar, 65534, 0) == 0, "chown: \(Errno(errno))")
        let expected = "is owned by uid 65534, not by the host's user (uid 0) or root; "
            + "\(Self.tail) chown 0, \(Self.escape)"
        #expect(refusal(plugin, as: .plugin)?.reason == expected)
        #expect(refusal(sidecar, as: .sidecar)?.reason == expected)
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to chown a directory to another user (nobody, uid 65534)"))
    func refusesADirectoryOwnedByAnotherUser() throws {
        let directory = try TemporaryDirectory()
        let path = try subdirectory("plugins", in: directory, mode: 0o755)
        try #require(chown(path, 65534, 65534) == 0, "chown: \(Errno(errno))")
        #expect(refusal(path, as: .directory)?.reason
            == "plugins directory is owned by uid 65534, not by the host's user (uid 0) or root; "
            + "\(Self.directoryTail) chown 0, \(Self.escape)")
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to chown a file to another group (nogroup, gid 65534)"))
    func anotherGroupAloneDoesNotMatterWhenTheGroupCannotWrite() throws {
        let directory = try TemporaryDirectory()
        let path = try file("libMine.so", in: directory, mode: 0o644)
        try #require(chown(path, 0, 65534) == 0, "chown: \(Errno(errno))")
        try FileSafety.check(path, as: .plugin)
    }

    // MARK: - The rule itself, for a host that is not root

    @Test func aHostThatIsNotRootAcceptsItsOwnFilesAndRoots() {
        #expect(FileSafety.reason(mode: 0o100644, owner: 1000, hostUser: 1000, kind: .plugin, linkTarget: nil) == nil)
        #expect(FileSafety.reason(mode: 0o100644, owner: 0, hostUser: 1000, kind: .sidecar, linkTarget: nil) == nil)
        #expect(FileSafety.reason(mode: 0o040755, owner: 0, hostUser: 1000, kind: .directory, linkTarget: nil) == nil)
    }

    @Test func aHostThatIsNotRootRefusesAnotherUsersFile() {
        #expect(FileSafety.reason(mode: 0o100644, owner: 1234, hostUser: 1000, kind: .plugin, linkTarget: nil)
            == "is owned by uid 1234, not by the host's user (uid 1000) or root; \(Self.tail) chown 1000, \(Self.escape)")
        #expect(FileSafety.reason(mode: 0o100644, owner: 1234, hostUser: 1000, kind: .plugin, linkTarget: "/srv/real.so")
            == "(a link to /srv/real.so) is owned by uid 1234, not by the host's user (uid 1000) or root; "
            + "\(Self.tail) chown 1000, \(Self.escape)")
    }

    @Test func ownershipIsReportedBeforeWritability() {
        #expect(FileSafety.reason(mode: 0o100666, owner: 1234, hostUser: 1000, kind: .plugin, linkTarget: nil)
            == "is owned by uid 1234, not by the host's user (uid 1000) or root; \(Self.tail) chown 1000, \(Self.escape)")
    }

    @Test func setIDBitsAreShownButDoNotMatter() {
        #expect(FileSafety.reason(mode: 0o104755, owner: 0, hostUser: 0, kind: .plugin, linkTarget: nil) == nil)
        #expect(FileSafety.reason(mode: 0o106775, owner: 0, hostUser: 0, kind: .plugin, linkTarget: nil)
            == "is writable by its group (mode 6775); \(Self.tail) chmod g-w, \(Self.escape)")
    }
}
