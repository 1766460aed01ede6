// swift-tools-version:6.0
// MeterGate: signed, store-and-forward energy readings from Modbus meters, power rails and S0 pulses.
import PackageDescription

// How the release `metergate` is linked on Linux (BENCHMARKS.md, footprint): with lld, which ships with the
// Swift toolchain, so that relative relocations are packed (DT_RELR, glibc 2.36+: a few KiB instead of the
// 2.2 MiB `.rela.dyn` the loader reads at every start); without exporting the executable's own symbols
// (`--static-swift-stdlib` passes `-export-dynamic`; nothing looks symbols up in the executable, and crash
// backtraces read `.symtab`, not `.dynsym`); and with the functions the running gateway uses placed together
// (scripts/metergate-symbol-order.txt, written by bench/footprint/symbol-order.py), so that the pages the
// kernel maps around each code page fault hold used code. Debug builds and tests keep the default linker.
let releaseLinkerSettings: [LinkerSetting] = [
    .unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic",
                  "-Xlinker", "--symbol-ordering-file=\(Context.packageDirectory)/scripts/metergate-symbol-order.txt",
                  "-Xlinker", "--no-warn-symbol-ordering"],
                 .when(platforms: [.linux], configuration: .release)),
]

let package = Package(
    name: "MeterGate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "metergate", targets: ["metergate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.0"..<"5.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        // The ledger's PostgreSQL storage (docs/ledger.md): the fleet's settlement side on a real database.
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.25.0"),
    ],
    targets: [
        // C libraries from Debian: one system-library target each, imported only by its wrapper module.
        .systemLibrary(name: "CModbus", pkgConfig: "libmodbus", providers: [.apt(["libmodbus-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CGPIOD", pkgConfig: "libgpiod", providers: [.apt(["libgpiod-dev"])]),
        // glibc's <malloc.h> (mallopt, malloc_trim): part of libc, nothing to link. Imported only by Gateway.
        .systemLibrary(name: "CMalloc"),
        // adjtimex(2) (the kernel's clock sync state), wrapped in C: <sys/timex.h> clashes with Glibc in Swift.
        // Part of libc; imported only by Gateway.
        .target(name: "CTimex"),
        // The commit the binary was built from (scripts/setup.sh writes it), for `metergate --version`.
        .target(name: "CBuildInfo"),

        // Value types shared by every stage; no I/O.
        .target(name: "MeterCore"),
        // YAML files (config, boards, meter profiles) read with file, key path and line in every error.
        .target(name: "ConfigFile", dependencies: [.product(name: "Yams", package: "Yams")]),

        // Sources.
        .target(name: "Modbus", dependencies: ["MeterCore", "ConfigFile", "CModbus", .product(name: "Logging", package: "swift-log")]),
        .target(name: "PowerRails", dependencies: ["MeterCore", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Pulse", dependencies: ["MeterCore", "CGPIOD", .product(name: "Logging", package: "swift-log")]),

        // Accounting, signing, storage, transport.
        .target(name: "Accounting", dependencies: ["MeterCore"]),
        .target(name: "Signing", dependencies: ["MeterCore", .product(name: "Crypto", package: "swift-crypto")]),
        // SQLite files: the only importer of CSQLite (a connection, statements, errors, a versioned migrator).
        .target(name: "SQLite", dependencies: ["CSQLite"]),
        .target(name: "Outbox", dependencies: ["MeterCore", "ConfigFile", "SQLite", .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto")]),
        // Delivery: the outbox drained to a RecordSink (claims, window, flushes, replays); MQTT is one sink.
        .target(name: "Delivery", dependencies: ["Outbox", "MeterCore", "ConfigFile", .product(name: "Logging", package: "swift-log")]),
        .target(name: "MQTT", dependencies: ["CMosquitto", "ConfigFile", "Delivery", .product(name: "Logging", package: "swift-log")]),

        // The reference settlement consumer: verified readings into a per-meter, per-interval ledger with tariffs.
        .target(name: "Ledger", dependencies: ["MeterCore", "ConfigFile", "Signing", "SQLite", "Delivery", "MQTT", .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto")]),

        // The ledger on PostgreSQL: the only importer of PostgresNIO.
        .target(name: "LedgerPostgres", dependencies: [
            "Ledger", "MeterCore", "Signing", .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto")]),

        // Simulated meters and faults, served over real libmodbus.
        .target(name: "Simulator", dependencies: ["MeterCore", "Modbus", "ConfigFile", .product(name: "Logging", package: "swift-log")]),

        // Config, wiring, lifecycle.
        .target(name: "Gateway", dependencies: [
            "MeterCore", "CMalloc", "CTimex", "ConfigFile", "Modbus", "PowerRails", "Pulse", "Accounting", "Signing", "Outbox", "Delivery", "MQTT",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "metergate", dependencies: [
            "CBuildInfo", "Gateway", "MeterCore", "ConfigFile", "Modbus", "PowerRails", "Pulse", "Signing", "Outbox", "Delivery", "MQTT", "Simulator", "Ledger", "LedgerPostgres",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], linkerSettings: releaseLinkerSettings),

        // What the benchmarks share: clocks, rates, swift-crypto's raw signing rate, a loopback mosquitto.
        .target(name: "BenchSupport", dependencies: [.product(name: "Crypto", package: "swift-crypto")], path: "bench/support"),
        // Benchmarks (run in release): signing and verification rates next to swift-crypto's raw rates.
        .executableTarget(name: "signing-bench", dependencies: ["BenchSupport", "Signing", "MeterCore", .product(name: "Crypto", package: "swift-crypto")], path: "bench/signing", exclude: ["run.sh"]),
        // Benchmarks (not tests): the whole gateway in one process, readings per CPU-second against the raw signing rate.
        .executableTarget(name: "pipeline-bench", dependencies: [
            "BenchSupport", "Gateway", "Simulator", "Signing", "Outbox", "Delivery", "MQTT", "MeterCore", "Modbus",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], path: "bench/pipeline"),
        // Benchmarks (not tests): run with bench/modbus/run.sh.
        .executableTarget(name: "modbus-bench", dependencies: ["Modbus", "Simulator", "MeterCore"], path: "bench/modbus", exclude: ["run.sh", "README.md"]),
        // Benchmarks (not tests): swift run -c release ledger-bench [COUNT].
        .executableTarget(name: "ledger-bench", dependencies: ["Ledger", "Signing", "MeterCore"], path: "bench/ledger"),
        // A simulated fleet (not shipped): K gateways' signed readings to a broker, for the ledger's tests and benchmarks.
        .executableTarget(name: "fleet-load", dependencies: ["Signing", "MeterCore", "MQTT", "Delivery", .product(name: "Logging", package: "swift-log"),
                                                            .product(name: "ArgumentParser", package: "swift-argument-parser")], path: "bench/fleet"),
        // Benchmarks (not tests): swift run -c release OutboxBench.
        .executableTarget(name: "OutboxBench", dependencies: ["BenchSupport", "Outbox", "Delivery", "MQTT", "MeterCore"], path: "bench/outbox", exclude: ["README.md"]),

        // Fuzzing (fuzz/README.md): entry points that take arbitrary bytes, a seeded mutation fuzzer, and a driver
        // that is a libFuzzer target when fuzz/run.sh builds it with -sanitize=fuzzer.
        .target(name: "FuzzTargets", dependencies: ["Modbus", "ConfigFile", "Gateway", "Signing", "MeterCore", "Delivery", "MQTT", "TestSupport"], path: "fuzz/FuzzTargets"),
        .executableTarget(name: "metergate-fuzz", dependencies: ["FuzzTargets"], path: "fuzz/Driver"),

        // Tests: one target per module, Swift Testing, real parts where they run here.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // What tests of several modules share: chain fixtures over the outbox's record builder.
        .target(name: "MeterGateTesting", dependencies: ["Outbox", "Modbus", "MeterCore", .product(name: "Crypto", package: "swift-crypto")], path: "Tests/MeterGateTesting"),
        // A test tool (not shipped): appends and publishes chained records, for tests that SIGKILL a real process.
        .executableTarget(name: "outbox-soak", dependencies: ["Outbox", "Delivery", "MQTT", "MeterCore", .product(name: "Crypto", package: "swift-crypto"),
                                                              .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          path: "Tests/OutboxSoak"),
        .testTarget(name: "MeterCoreTests", dependencies: ["MeterCore"]),
        .testTarget(name: "ConfigFileTests", dependencies: ["ConfigFile"]),
        .testTarget(name: "ModbusTests", dependencies: ["Modbus", "MeterCore", "MeterGateTesting", "TestSupport"]),
        .testTarget(name: "PowerRailsTests", dependencies: ["PowerRails", "Accounting", "MeterCore", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "PulseTests", dependencies: ["Pulse", "Accounting", "MeterCore", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "AccountingTests", dependencies: ["Accounting", "MeterCore", "TestSupport"]),
        .testTarget(name: "SigningTests", dependencies: ["Signing", "MeterCore", "TestSupport"]),
        .testTarget(name: "SQLiteTests", dependencies: ["SQLite", "TestSupport"]),
        .testTarget(name: "OutboxTests", dependencies: ["Outbox", "SQLite", "MeterCore", "MeterGateTesting", "TestSupport", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "DeliveryTests", dependencies: ["Delivery", "Outbox", "MeterCore", "MeterGateTesting", "TestSupport", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "MQTTTests", dependencies: ["MQTT", "Delivery", "Outbox", "SQLite", "MeterGateTesting", "TestSupport", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "SimulatorTests", dependencies: ["Simulator", "Modbus", "MeterCore", "TestSupport"]),
        .testTarget(name: "GatewayTests", dependencies: [
            "Gateway", "Accounting", "ConfigFile", "MeterCore", "MeterGateTesting", "Modbus", "Delivery", "MQTT", "Outbox", "PowerRails", "Pulse", "Signing", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
        .testTarget(name: "FuzzTests", dependencies: ["FuzzTargets", "ConfigFile", "Gateway", "Modbus", "Signing", "TestSupport"]),
        .testTarget(name: "LedgerTests", dependencies: ["Ledger", "LedgerPostgres", "ConfigFile", "Signing", "Delivery", "MQTT", "MeterCore", "TestSupport"]),
    ]
)

// Swift 6 language mode and the same upcoming features for every target.
for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
package.swiftLanguageModes = [.v6]
