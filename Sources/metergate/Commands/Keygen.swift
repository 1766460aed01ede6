import ArgumentParser
import Foundation
import MeterCore
import Signing

/// `metergate keygen`: makes a signing key (mode 0600) and prints its public forms.
struct Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a signing key file (mode 0600) and print the public key as JWK and as SPKI DER hex.",
        discussion: """
            With --show, print the public key of an existing key file instead. The key id is the RFC 7638 JWK thumbprint.
            With --key-set, print the JWK Set of the given key files (newest first) on one line: the document the \
            gateway publishes retained on metergate/v1/<gateway>/keys, so records signed with older keys stay verifiable.
            With --rotate-from OLD.key --gateway GW, the new key is announced by a rotation statement signed with the old \
            key, written to OUT.rotation: list it in the config's signing.rotations (and the old key's public half in \
            signing.previous_keys), and settlement that trusts the old key for GW trusts the new one.
            """)

    @Option(name: .shortAndLong, help: "Where to write the new private key (PEM, PKCS#8). Never overwrites.")
    var out: String?

    @Option(name: .shortAndLong, help: "EdDSA (Ed25519, default) or ES256 (P-256; also used for OCMF).")
    var algorithm: String = "EdDSA"

    @Option(help: "Print the public key of this existing private key file.")
    var show: String?

    @Option(name: .customLong("key-set"), parsing: .upToNextOption,
            help: ArgumentHelp("Print the JWK Set of these key files (private or public keys, in any form verify reads), newest first.", valueName: "KEY"))
    var keySet: [String] = []

    @Option(name: .customLong("rotate-from"), help: "The current private key: sign a rotation statement from it to the new key.")
    var rotateFrom: String?

    @Option(help: "The gateway id the rotation statement names (with --rotate-from).")
    var gateway: String?

    func run() async throws {
        if rotateFrom != nil || gateway != nil {
            guard let rotateFrom, let gateway, out != nil, show == nil, keySet.isEmpty else {
                throw Failure.usage("--rotate-from OLD.key and --gateway GW go together, with --out NEW.key")
            }
            if let problem = Identifier.problem(with: gateway) { throw Failure.usage("--gateway '\(gateway)' \(problem)") }
            do { _ = try KeyFile.load(rotateFrom) } catch { throw Failure.usage("--rotate-from \(error.description)") }
        }
        if !keySet.isEmpty {
            guard out == nil, show == nil else { throw Failure.usage("--key-set prints a key set; it cannot be combined with --out or --show") }
            var keys = KeySet()
            for path in keySet {
                do { keys.formUnion(try KeySet.load(path: path)) } catch { throw Failure.usage(error.description) }
            }
            print(keys.document)
            return
        }
        let key: SigningKey
        if let show {
            do { key = try KeyFile.load(show) } catch { throw Failure.usage(error.description) }
        } else {
            guard let out else { throw Failure.usage("keygen needs --out FILE for the new key (or --show FILE)") }
            guard let algorithm = SigningAlgorithm(rawValue: algorithm) else {
                throw Failure.usage("--algorithm: expected EdDSA or ES256, found '\(algorithm)'")
            }
            key = SigningKey.generate(algorithm)
            do { try KeyFile.write(key, to: out) } catch { throw Failure.run(error.description) }
            print("private key: \(out) (mode 0600, \(algorithm.rawValue))")
            if let rotateFrom, let gateway {
                let previous: SigningKey
                do { previous = try KeyFile.load(rotateFrom) } catch { throw Failure.usage("--rotate-from \(error.description)") }
                let statement: KeyRotationStatement
                do {
                    statement = try KeyRotationStatement.make(gateway: gateway, from: previous, to: key.publicKey,
                                                              issuedMillis: Int64((Date().timeIntervalSince1970 * 1000).rounded()))
                } catch { throw Failure.run(error.description) }
                let path = "\(out).rotation"
                guard FileManager.default.createFile(atPath: path, contents: Data((statement.compact + "\n").utf8),
                                                     attributes: [.posixPermissions: 0o644]) else {
                    throw Failure.run("cannot write the rotation statement \(path)")
                }
                print("rotation statement: \(path) (gateway \(gateway), from \(previous.publicKey.keyID))")
                print("rotation: \(statement.compact)")
            }
        }
        let pub = key.publicKey
        print("kid: \(pub.keyID)")
        print("jwk: \(pub.jwkJSON)")
        print("spki-der-hex: \(pub.spkiDER.hexString)")
        print(pub.pemRepresentation, terminator: "")
    }
}
