// swift-tools-version: 6.1
// The benchmark suite lives in its own package so the main build stays lean.
// Run it with Benchmarks/run, which also writes docs/PERFORMANCE.md.
import PackageDescription

let package = Package(
    name: "ServiceHostBenchmarks",
    dependencies: [
        .package(name: "ServiceHost", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The limits the host is compared with, measured in C: a direct call
        // through a function pointer and a raw ffi_call with a prepared CIF.
        .target(
            name: "CBaselines",
            linkerSettings: [.linkedLibrary("ffi"), .linkedLibrary("dl")]
        ),
        .executableTarget(
            name: "HostBenchmarks",
            dependencies: [
                "CBaselines",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ServiceHost", package: "ServiceHost"),
                .product(name: "ServiceHostControl", package: "ServiceHost"),
                .product(name: "ServiceHostMetrics", package: "ServiceHost"),
            ],
            path: "Benchmarks/HostBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
