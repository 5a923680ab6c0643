// swift-tools-version: 6.0
import CompilerPluginSupport
import PackageDescription

let package = Package(
    name: "ServiceHost",
    // Linux is the target; this only lets async entry points resolve as on Linux.
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "ServiceHost", targets: ["ServiceHost"]),
        .library(name: "ServiceHostControl", targets: ["ServiceHostControl"]),
        .library(name: "ServiceHostMetrics", targets: ["ServiceHostMetrics"]),
        // For plugin authors: Swift plugins as a type (no host, TOMLKit or
        // libffi inside), and the C header alone.
        .library(name: "ServiceHostPlugin", targets: ["ServiceHostPlugin"]),
        .library(name: "CServiceHostABI", targets: ["CServiceHostABI"]),
        .executable(name: "servicehost", targets: ["servicehost"]),
        // The bundled example plugins: each its own shared library.
        .library(name: "Counter", type: .dynamic, targets: ["Counter"]),
        .library(name: "Greeter", type: .dynamic, targets: ["Greeter"]),
        .library(name: "Flaky", type: .dynamic, targets: ["Flaky"]),
        .library(name: "Clock", type: .dynamic, targets: ["Clock"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swiftlang/swift-syntax", "600.0.1"..<"604.0.0"),
    ],
    targets: [
        // The plugin ABI, from the same header plugin authors compile against.
        .systemLibrary(name: "CServiceHostABI", path: "include"),
        // libffi from the system.
        .systemLibrary(
            name: "CLibFFI",
            pkgConfig: "libffi",
            providers: [.apt(["libffi-dev"])]
        ),
        // What Swift cannot reach in libffi directly (see the header).
        .target(name: "CFFIShims", dependencies: ["CLibFFI"]),
        // Thread settings Swift cannot reach directly (see the header).
        .target(name: "CThreadShims"),
        // Process settings Swift cannot reach directly (see the header).
        .target(name: "CProcessShims"),
        .target(
            name: "ServiceHost",
            dependencies: [
                "CServiceHostABI",
                "CFFIShims",
                "CLibFFI",
                "CThreadShims",
                "CProcessShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The Swift plugin SDK: `#servicePlugin(Type.self)` exports a
        // ServicePlugin type's C entry points (the macro), over a small runtime.
        .macro(
            name: "ServiceHostPluginMacros",
            dependencies: [
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax"),
                .product(name: "SwiftCompilerPlugin", package: "swift-syntax"),
            ]
        ),
        .target(
            name: "ServiceHostPlugin",
            dependencies: [
                "CServiceHostABI",
                "ServiceHostPluginMacros",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The host's metrics, in Prometheus' text format, through swift-prometheus.
        .target(
            name: "ServiceHostMetrics",
            dependencies: [
                "ServiceHost",
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The control API (HTTP + JSON on a Unix socket) and its client, the
        // health and metrics endpoints on TCP, and the operator's stack
        // (systemd's notify protocol, log formats), over swift-nio.
        .target(
            name: "ServiceHostControl",
            dependencies: [
                "ServiceHost",
                "ServiceHostMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .executableTarget(
            name: "servicehost",
            dependencies: [
                "ServiceHost",
                "ServiceHostControl",
                "ServiceHostMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Counter", path: "Plugins/Counter", exclude: ["Counter.toml"],
            publicHeadersPath: ".", cSettings: [.headerSearchPath("../../include")]
        ),
        .target(
            name: "Greeter", dependencies: ["ServiceHostPlugin"],
            path: "Plugins/Greeter", exclude: ["Greeter.toml"]
        ),
        .target(
            name: "Flaky", path: "Plugins/Flaky", exclude: ["Flaky.toml"],
            publicHeadersPath: ".", cSettings: [.headerSearchPath("../../include")]
        ),
        .target(
            name: "Clock", path: "Plugins/Clock", exclude: ["Clock.toml"],
            publicHeadersPath: ".", cxxSettings: [.headerSearchPath("../../include")]
        ),
        .testTarget(
            name: "ServiceHostTests",
            dependencies: [
                "ServiceHost", "ServiceHostControl", "ServiceHostMetrics", "servicehost",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: []
        ),
    ]
)
