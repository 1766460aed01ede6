import ArgumentParser
import ConfigFile
import Gateway
import Logging
import Signing

/// `--config FILE` plus where boards and profiles are looked up.
struct ConfigOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The gateway config file (YAML).")
    var config: String

    @Option(name: .customLong("boards"), help: "A directory of board files (default: ./boards, then the installed set).")
    var boardDirectories: [String] = []

    @Option(name: .customLong("profiles"), help: "A directory of meter profiles (default: ./profiles, then the installed set).")
    var profileDirectories: [String] = []

    /// Loads and validates the config; the errors, if any, are all of them.
    func loadValidated() throws(ConfigErrors) -> GatewayConfig {
        try GatewayConfig.load(
            path: config,
            boardDirectories: boardDirectories.isEmpty ? DataDirectories.boards() : boardDirectories,
            profileDirectories: profileDirectories.isEmpty ? DataDirectories.profiles() : profileDirectories)
    }

    /// Loads the config's signing key, or fails with exit code 2 naming the key file, what is wrong and how to
    /// make one: the same check for `check` and `run`, so a key `check` accepts is one `run` signs with.
    static func signingKey(of config: GatewayConfig) throws -> SigningKey {
        do { return try KeyFile.load(config.signing.keyFile, algorithm: config.signing.algorithm) } catch {
            throw Failure.usage("\(config.file): signing.key: \(error). Make one with: metergate keygen --out \(config.signing.keyFile) --algorithm \(config.signing.algorithm.rawValue)")
        }
    }

    /// Loads and validates the config, or fails with exit code 2 and every error found.
    func load() throws -> GatewayConfig {
        do {
            return try loadValidated()
        } catch {
            let count = error.errors.count
            throw Failure.usage("\(count) error\(count == 1 ? "" : "s") in the configuration:\n\(error.description)")
        }
    }
}

/// `--log-level`.
struct LogOptions: ParsableArguments {
    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    func bootstrap(default fallback: String = "info") {
        let level = Logger.Level(rawValue: logLevel ?? fallback) ?? .info
        GatewayLogHandler.bootstrap(level: level)
    }
}

/// A command whose capability is not in this build yet: says so and exits 2, as the contract allows.
protocol NotYetAvailable {
    static var capability: String { get }
}

extension NotYetAvailable {
    func notYet() throws -> Never {
        throw Failure.usage("\(Self.capability) is not available in this build yet")
    }
}
