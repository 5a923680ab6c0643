import Foundation

/// The plugins directory: every `*.so` directly in it is one service, with an
/// optional sidecar `<name>.toml` beside it.
struct PluginDirectory: Sendable {
    /// One plugin file found in the directory.
    struct Entry: Sendable, Equatable {
        let name: String
        let file: String
        /// The sidecar's path, when one exists.
        let sidecar: String?
    }

    let path: String

    /// `path` made absolute against the current directory, without resolving
    /// links: a plugin that calls `chdir` must not change which directory a
    /// later scan (on SIGHUP) reads.
    static func absolute(_ path: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let current = FileManager.default.currentDirectoryPath
        var relative = Substring(path)
        while relative.hasPrefix("./") { relative = relative.dropFirst(2) }
        if relative == "." || relative.isEmpty { return current }
        return current.hasSuffix("/") ? current + relative : current + "/" + relative
    }

    /// The directory part of a file's path (`.` when it has none).
    static func directory(of file: String) -> String {
        guard let slash = file.lastIndex(of: "/") else { return "." }
        return slash == file.startIndex ? "/" : String(file[..<slash])
    }

    /// The service name for a file name: without a leading `lib` and without
    /// `.so` (`libEcho.so` -> `Echo`); `nil` for files that are not plugins.
    static func serviceName(forFileName fileName: String) -> String? {
        guard !fileName.hasPrefix("."), fileName.hasSuffix(".so") else { return nil }
        var name = fileName.dropLast(3)
        if name.hasPrefix("lib"), name.count > 3 { name = name.dropFirst(3) }
        return name.isEmpty ? nil : String(name)
    }

    /// Lists the plugins. Files that cannot be used as services (a name taken
    /// by an earlier file) come back as errors; the rest are usable.
    func scan() throws(PluginError) -> (entries: [Entry], errors: [PluginError]) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw PluginError(.notFound, file: path, reason: "plugins directory does not exist")
        }
        guard isDirectory.boolValue else {
            throw PluginError(.unreadable, file: path, reason: "is not a directory")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw PluginError(.unreadable, file: path, reason: "plugins directory cannot be read: \(error.localizedDescription)")
        }
        var entries: [Entry] = []
        var errors: [PluginError] = []
        var taken: [String: String] = [:]
        // Sorted, so that which of two clashing files wins does not depend on the file system.
        for fileName in names.sorted() {
            guard let name = Self.serviceName(forFileName: fileName) else { continue }
            let file = "\(path)/\(fileName)"
            if let earlier = taken[name] {
                errors.append(PluginError(.duplicateName, file: file,
                                          reason: "service name '\(name)' is already used by \(earlier); this file is ignored"))
                continue
            }
            taken[name] = fileName
            let sidecar = "\(path)/\(name).toml"
            entries.append(Entry(name: name, file: file,
                                 sidecar: FileManager.default.fileExists(atPath: sidecar) ? sidecar : nil))
        }
        return (entries, errors)
    }

    /// Sidecars that no plugin will read, each with a warning naming it:
    /// `X.toml` with no `X.so` or `libX.so` beside it, and `libX.toml`, which
    /// the author of `libX.so` most likely meant as `X.toml`.
    func straySidecars(besides entries: [Entry]) -> [(file: String, warning: String)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return [] }
        let services = Set(entries.map(\.name))
        var stray: [(file: String, warning: String)] = []
        for fileName in names.sorted() where fileName.hasSuffix(".toml") && !fileName.hasPrefix(".") {
            let name = String(fileName.dropLast(5))
            guard !name.isEmpty, !services.contains(name) else { continue }
            let file = "\(path)/\(fileName)"
            if name.hasPrefix("lib"), services.contains(String(name.dropFirst(3))) {
                let meant = String(name.dropFirst(3))
                stray.append((file, "\(file): sidecar is not read: a sidecar is named after the service, not the file; did you mean \(meant).toml?"))
            } else {
                stray.append((file, "\(file): sidecar is not read: there is no plugin \(name).so or lib\(name).so beside it"))
            }
        }
        return stray
    }
}
