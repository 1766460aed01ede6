import ArgumentParser
import ConfigFile
import Gateway
import Logging
import MeterCore
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

    /// What the gateway publishes on its keys topic: the signing key, `previous_keys`, and the `rotations`
    /// statements, each checked: it names this gateway, is signed by one of the published keys, and names one of
    /// them as the new key. A statement that fails is a config error (exit 2), not a surprise at settlement.
    static func keysAnnouncement(of config: GatewayConfig, key: SigningKey) throws -> KeysAnnouncement {
        var published = KeySet([key.publicKey])
        for file in config.signing.previousKeys {
            do { published.formUnion(try KeySet.load(path: file)) } catch { throw Failure.usage("\(config.file): signing.previous_keys: \(error)") }
        }
        var rotations: [KeyRotationStatement] = []
        for file in config.signing.rotations {
            let statement: KeyRotationStatement
            do { statement = try KeyRotationStatement.load(path: file) } catch { throw Failure.usage("\(config.file): signing.rotations: \(error)") }
            let problem: String?
            if statement.gateway != config.gateway.rawValue {
                problem = "it names gateway '\(statement.gateway)', not '\(config.gateway)'"
            } else if published[statement.newKey.keyID] == nil {
                problem = "its new key \(statement.newKey.keyID) is neither signing.key nor in signing.previous_keys"
            } else if let signer = published[statement.previousKeyID], !statement.isSigned(by: signer) {
                problem = "its signature does not verify with \(statement.previousKeyID)"
            } else if published[statement.previousKeyID] == nil {
                problem = "it is signed by \(statement.previousKeyID), which is not in signing.previous_keys (add the old key's public half)"
            } else {
                problem = nil
            }
            if let problem { throw Failure.usage("\(config.file): signing.rotations: \(file): \(problem)") }
            rotations.append(statement)
        }
        return KeysAnnouncement(keys: published, rotations: rotations)
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
