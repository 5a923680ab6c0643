import ArgumentParser
import Foundation

struct NewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Write a ready plugin project: source, build file, a sidecar with every key, and a README.",
        discussion: """
            The project builds with `make` (offline: C needs only the header, copied \
            in; Swift and Rust depend on the SDK in a ServiceHost checkout by path) \
            and runs with `servicehost run --plugins plugins`.
            """
    )

    @Argument(help: "The service's name: a letter, then letters, digits or underscores (at most 64). It names the plugin file, the type and the sidecar.")
    var name: String

    @Option(name: .long, help: "c, swift or rust.")
    var language: String = "c"

    @Option(name: .long, help: "Where the project's folder NAME is made (default: the current directory).")
    var directory: String = "."

    @Option(name: .long, help: ArgumentHelp(
        "A ServiceHost checkout: the header and SDKs come from it (default: the checkout this binary was built from, if it still exists).",
        valueName: "path"))
    var sdkPath: String?

    func validate() throws {
        if let problem = ProjectTemplate.problem(withName: name) { throw ValidationError(problem) }
        guard ProjectTemplate.Language(rawValue: language.lowercased()) != nil else {
            throw ValidationError("'\(language)' is not a language; use c, swift or rust.")
        }
    }

    func run() throws {
        let checkout = try ProjectTemplate.checkout(sdkPath)
        let language = ProjectTemplate.Language(rawValue: language.lowercased())!
        let project = URL(fileURLWithPath: directory).appendingPathComponent(name).standardizedFileURL
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: project.path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw ProjectTemplate.NewProjectError(description: "\(project.path) exists and is not a folder; choose another --directory or name")
        }
        if let existing = try? FileManager.default.contentsOfDirectory(atPath: project.path), !existing.isEmpty {
            throw ProjectTemplate.NewProjectError(description: "\(project.path) exists and is not empty; choose another --directory or name")
        }
        let files = try ProjectTemplate.files(name: name, language: language, checkout: checkout)
        for (path, text) in files {
            let file = project.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: file, atomically: true, encoding: .utf8)
        }
        print("wrote \(project.path) (\(language.rawValue)):")
        for (path, _) in files { print("  \(path)") }
        print("build: cd \(project.path) && make")
        print("run:   servicehost run --plugins \(project.path)/plugins")
    }
}
