import ArgumentParser
import Signing

/// `metergate keygen`: makes a signing key (mode 0600) and prints its public forms.
struct Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a signing key file (mode 0600) and print the public key as JWK and as SPKI DER hex.",
        discussion: """
            With --show, print the public key of an existing key file instead. The key id is the RFC 7638 JWK thumbprint.
            With --key-set, print the JWK Set of the given key files (newest first) on one line: the document the \
            gateway publishes retained on metergate/v1/<gateway>/keys, so records signed with older keys stay verifiable.
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

    func run() async throws {
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
        }
        let pub = key.publicKey
        print("kid: \(pub.keyID)")
        print("jwk: \(pub.jwkJSON)")
        print("spki-der-hex: \(pub.spkiDER.hexString)")
        print(pub.pemRepresentation, terminator: "")
    }
}
