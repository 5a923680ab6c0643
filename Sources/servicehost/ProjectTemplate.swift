import Foundation

/// The files `servicehost new` writes, for each language.
enum ProjectTemplate {
    enum Language: String, CaseIterable {
        case c, swift, rust
    }

    /// Why `name` cannot name a new project, or `nil`: it becomes a file
    /// name, a C/Swift/Rust identifier and a sidecar's name, so only a
    /// letter, then letters, digits and underscores.
    static func problem(withName name: String) -> String? {
        let valid = name.utf8.count <= 64 && name.first.map { $0.isASCII && $0.isLetter } == true
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
        guard valid else {
            return "'\(name)' is not a valid service name: use a letter, then letters, digits or underscores (at most 64)"
        }
        guard !reserved.contains(name), !reserved.contains(name.lowercased()) else {
            return "'\(name)' is a keyword or a name the templates use (in Swift, Rust or the SDKs); choose another"
        }
        return nil
    }

    /// Names a generated project cannot take: keywords of the three
    /// languages, Swift's and the SDKs' type names, Rust's reserved crates.
    private static let reserved: Set<String> = [
        "class", "struct", "enum", "protocol", "extension", "func", "var", "let", "init", "deinit", "import", "return",
        "if", "else", "for", "while", "do", "switch", "case", "default", "break", "continue", "in", "is", "as", "self", "Self",
        "super", "true", "false", "nil", "throw", "throws", "try", "catch", "static", "public", "private", "internal",
        "String", "Int", "Double", "Bool", "Array", "Dictionary", "Set", "Optional", "Error", "Any", "Type",
        "ServicePlugin", "PluginContext", "PluginConfig", "PluginError", "LoopResult", "ServicePluginExport", "ServiceHostPlugin",
        "fn", "mod", "use", "pub", "impl", "trait", "type", "match", "loop", "move", "ref", "mut", "crate", "where", "unsafe",
        "async", "await", "dyn", "box", "test", "std", "core", "alloc", "proc_macro", "Service", "Context", "Plugin", "Loop",
        "main", "servicehost",
    ]

    /// `path` inside a double-quoted Swift or TOML string.
    private static func quoted(_ path: String) -> String {
        path.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }

    /// The ServiceHost checkout to take the header and SDKs from: `path`,
    /// or the one this binary was built from while it exists.
    static func checkout(_ path: String?) throws -> URL {
        let candidate = path.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let header = candidate.appendingPathComponent("include/servicehost.h")
        guard FileManager.default.fileExists(atPath: header.path) else {
            throw NewProjectError(description: path == nil
                ? "the ServiceHost checkout this binary was built from (\(candidate.path)) is gone; pass --sdk-path with a checkout"
                : "\(candidate.path) is not a ServiceHost checkout (no include/servicehost.h)")
        }
        // Looked at (stat, which opens nothing) before it is read: a FIFO
        // there would block the read forever, a huge file fill memory.
        let attributes = try FileManager.default.attributesOfItem(atPath: header.path)
        guard attributes[.type] as? FileAttributeType == .typeRegular,
              (attributes[.size] as? Int ?? .max) <= maxHeaderSize else {
            throw NewProjectError(description: "\(header.path) is not a regular file of at most \(maxHeaderSize / 1024) KiB; is \(candidate.path) a ServiceHost checkout?")
        }
        return candidate.standardizedFileURL
    }

    /// The largest servicehost.h `new` copies (today's is about 12 KiB).
    static let maxHeaderSize = 1 << 20

    struct NewProjectError: Error, CustomStringConvertible {
        let description: String
    }

    /// Path in the project → contents.
    static func files(name: String, language: Language, checkout: URL) throws -> [(String, String)] {
        let readme = """
            # \(name)

            A ServiceHost plugin in \(language == .c ? "C" : language == .swift ? "Swift" : "Rust").

            ```sh
            make                                   # builds plugins/lib\(name).so, with \(name).toml beside it
            servicehost run --plugins plugins      # runs it; Ctrl-C stops
            ```

            `\(name).toml` is the sidecar: every key the host reads, with its default,
            and the `[config]` the plugin reads. The plugin file must not be writable by
            others than you (the host refuses it otherwise); `make` installs it so.

            """
        switch language {
        case .c:
            let header = try String(contentsOf: checkout.appendingPathComponent("include/servicehost.h"), encoding: .utf8)
            return [("\(name).c", c(name)), ("include/servicehost.h", header), ("Makefile", cMakefile(name)),
                    ("\(name).toml", sidecar(name)), ("README.md", readme)]
        case .swift:
            return [("Package.swift", swiftPackage(name, checkout: checkout)), ("Sources/\(name)/\(name).swift", swift(name)),
                    ("Makefile", swiftMakefile(name)), ("\(name).toml", sidecar(name)), ("README.md", readme), (".gitignore", ".build/\nplugins/\n")]
        case .rust:
            return [("Cargo.toml", cargoManifest(name, checkout: checkout)), ("src/lib.rs", rust(name)),
                    ("Makefile", rustMakefile(name)), ("\(name).toml", sidecar(name)), ("README.md", readme), (".gitignore", "target/\nCargo.lock\nplugins/\n")]
        }
    }

    private static func sidecar(_ name: String) -> String {
        """
        # Sidecar of lib\(name).so: how the host runs the \(name) service. Every key
        # is optional; those commented out show their defaults.
        interval_ms = 1000            # pause between loops (default 0: none)
        # delay_ms = 0                # wait before the first start
        # restart = "always"          # "always", "on-failure" or "never"
        # retries = -1                # restarts allowed before it is marked failed (-1: unlimited)
        # backoff_initial_ms = 100    # wait before the second of several consecutive restarts, doubling
        # backoff_max_ms = 30000      # the longest wait between restarts
        # healthy_after_ms = 10000    # a run this long resets the backoff
        # restart_limit = 10          # more restarts than this in restart_window_ms: failed (0: no limit)
        # restart_window_ms = 60000
        # stop_timeout_ms = 5000      # how long a stop waits for svc_loop, then svc_stop
        # watchdog_ms = 0             # one svc_loop call longer than this is a hang (0: off)
        # start_timeout_ms = 0        # an svc_create longer than this fails the start (0: off)
        # isolation = "thread"        # "thread", or "process": a worker process of its own
        # requires = []               # services that must have started before this one
        # reload = "restart"          # or "overlap": create the new version before the old one stops

        [config]                      # what the plugin reads
        who = "world"
        times = 0                     # finish after this many loops (0: never)

        """
    }

    private static func c(_ name: String) -> String {
        """
        /* \(name) -- a ServiceHost service in C. See include/servicehost.h for the contract. */
        #include "servicehost.h"

        typedef struct { const svc_host *host; const char *who; int64_t ticks, times; } state;

        SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }
        SVC_EXPORT const char *svc_plugin_version(void) { return "0.1.0"; }

        SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
            state *s = calloc(1, sizeof *s);
            if (!s) return -12;
            s->host = host;
            s->who = host->config("who") ? host->config("who") : "world";
            if (svc_config_int(host, "times", 0, &s->times) == SVC_CONFIG_INVALID) {
                svc_logf(host, SVC_LOG_ERROR, "[config] times must be a whole number");
                free(s);
                return -22;
            }
            *ctx = s;
            return 0;
        }

        SVC_EXPORT int32_t svc_loop(void *ctx) {
            state *s = ctx;
            svc_logf(s->host, SVC_LOG_INFO, "Hello, %s! (%lld)", s->who, (long long)++s->ticks);
            return s->times > 0 && s->ticks >= s->times ? SVC_DONE : SVC_CONTINUE;
        }

        SVC_EXPORT void svc_stop(void *ctx) { free(ctx); }

        """
    }

    private static func cMakefile(_ name: String) -> String {
        """
        # `make` builds plugins/lib\(name).so and puts \(name).toml beside it.
        CFLAGS ?= -O2 -Wall -Wextra

        plugins/lib\(name).so: \(name).c include/servicehost.h \(name).toml
        \tmkdir -p plugins && chmod 0755 plugins
        \t$(CC) -shared -fPIC $(CFLAGS) -I include -o $@ \(name).c
        \tchmod 0755 $@
        \tinstall -m 0644 \(name).toml plugins/\(name).toml

        clean:
        \trm -rf plugins

        .PHONY: clean

        """
    }

    private static func swift(_ name: String) -> String {
        """
        // \(name) -- a ServiceHost service in Swift, with the ServiceHostPlugin SDK.
        import ServiceHostPlugin

        struct \(name): ServicePlugin {
            let who: String
            let times: Int
            var ticks = 0

            init(context: PluginContext) throws {
                who = context.config["who"] ?? "world"
                times = try context.config.int("times", default: 0)
            }

            mutating func loop(context: PluginContext) throws -> LoopResult {
                ticks += 1
                context.logger.info("Hello, \\(who)! (\\(ticks))")
                return times > 0 && ticks >= times ? .done : .continue
            }
        }

        #servicePlugin(\(name).self, version: "0.1.0")

        """
    }

    private static func swiftPackage(_ name: String, checkout: URL) -> String {
        """
        // swift-tools-version: 6.0
        import PackageDescription

        let package = Package(
            name: "\(name)",
            products: [.library(name: "\(name)", type: .dynamic, targets: ["\(name)"])],
            // The ServiceHost checkout with the SDK (a path works offline).
            dependencies: [.package(path: "\(quoted(checkout.path))")],
            targets: [
                .target(name: "\(name)", dependencies: [.product(name: "ServiceHostPlugin", package: "\(checkout.lastPathComponent)")]),
            ]
        )

        """
    }

    private static func swiftMakefile(_ name: String) -> String {
        """
        # `make` builds plugins/lib\(name).so (optimized) and puts \(name).toml
        # beside it. The first build also builds swift-syntax for the SDK's macro,
        # optimized: about 10 minutes on 2 cores (later builds take seconds);
        # `make debug` builds without optimization, the first time in about 2.
        plugins/lib\(name).so: Package.swift Sources/\(name)/\(name).swift \(name).toml
        \tswift build -c release
        \tmkdir -p plugins && chmod 0755 plugins
        \tinstall -m 0755 .build/release/lib\(name).so $@
        \tinstall -m 0644 \(name).toml plugins/\(name).toml

        debug: Package.swift Sources/\(name)/\(name).swift \(name).toml
        \tswift build
        \tmkdir -p plugins && chmod 0755 plugins
        \tinstall -m 0755 .build/debug/lib\(name).so plugins/lib\(name).so
        \tinstall -m 0644 \(name).toml plugins/\(name).toml

        clean:
        \trm -rf plugins .build

        .PHONY: debug clean

        """
    }

    private static func crateName(_ name: String) -> String { name.lowercased() }

    private static func cargoManifest(_ name: String, checkout: URL) -> String {
        """
        [package]
        name = "\(crateName(name))"
        version = "0.1.0"
        edition = "2021"

        [lib]
        crate-type = ["cdylib"]

        [dependencies]
        servicehost-plugin = { path = "\(quoted(checkout.appendingPathComponent("sdk/rust/servicehost-plugin").path))" }

        """
    }

    private static func rust(_ name: String) -> String {
        """
        //! \(name) -- a ServiceHost service in Rust, with the servicehost-plugin crate.
        use servicehost_plugin::{export_plugin, Context, Error, Loop, Plugin};

        struct Service {
            who: String,
            times: i64,
            ticks: i64,
        }

        impl Plugin for Service {
            fn create(context: &Context) -> Result<Self, Error> {
                Ok(Service {
                    who: context.config("who").unwrap_or_else(|| "world".into()),
                    times: context.config_int("times")?.unwrap_or(0),
                    ticks: 0,
                })
            }

            fn run(&mut self, context: &Context) -> Result<Loop, Error> {
                self.ticks += 1;
                context.info(&format!("Hello, {}! ({})", self.who, self.ticks));
                Ok(if self.times > 0 && self.ticks >= self.times { Loop::Done } else { Loop::Continue })
            }
        }

        export_plugin!(Service, "0.1.0");

        """
    }

    private static func rustMakefile(_ name: String) -> String {
        """
        # `make` builds plugins/lib\(name).so and puts \(name).toml beside it.
        plugins/lib\(name).so: Cargo.toml src/lib.rs \(name).toml
        \tcargo build --release --offline
        \tmkdir -p plugins && chmod 0755 plugins
        \tinstall -m 0755 target/release/lib\(crateName(name)).so $@
        \tinstall -m 0644 \(name).toml plugins/\(name).toml

        clean:
        \trm -rf plugins target

        .PHONY: clean

        """
    }
}
