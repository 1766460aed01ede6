import ArgumentParser
import Foundation
import MeterCore
import Signing

/// `metergate trust`: the settlement side's trust store: which public keys are trusted for which gateway.
struct Trust: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage a trust store: for each gateway id, the public keys trusted to sign its records.",
        discussion: """
            Settlement trusts a gateway's key because it was handed over at commissioning (the key `metergate keygen` \
            printed on the gateway), never because it appeared on the broker. `tail`, `ledger` and `verify` take the file \
            with --trust; they add keys a trusted key rotated to (a signed rotation statement on the keys topic) by themselves.
            """,
        subcommands: [TrustAdd.self, TrustList.self])
}

struct TrustAdd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Trust the public key(s) in a key file for one gateway (creates the trust store when missing).")

    @Option(help: "The trust store file (JSON).")
    var trust: String

    @Option(help: "The gateway id the key signs for.")
    var gateway: String

    @Option(help: "A public key file: JWK, JWK Set, PEM or SPKI hex (a private key file's public half is used).")
    var key: String

    @Option(name: .customLong("not-after"), help: "Records whose interval ends after this UTC time do not verify with the key (2027-01-01 or 2027-01-01T00:00:00Z).")
    var notAfter: String?

    func run() throws {
        if let problem = Identifier.problem(with: gateway) { throw Failure.usage("--gateway '\(gateway)' \(problem)") }
        let keys: KeySet
        do { keys = try KeySet.load(path: key) } catch { throw Failure.usage("--key \(error)") }
        var limit: Int64?
        if let notAfter {
            guard let millis = TrustStore.parseTime(notAfter) else { throw Failure.usage("--not-after '\(notAfter)': expected 2027-01-01 or 2027-01-01T00:00:00Z") }
            limit = millis
        }
        var store = TrustStore()
        if FileManager.default.fileExists(atPath: trust) {
            do { store = try TrustStore.load(path: trust) } catch { throw Failure.usage("--trust \(error)") }
        }
        let now = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        for verifying in keys.keys {
            let added = store.add(TrustedKey(key: verifying, notAfterMillis: limit, addedMillis: now), gateway: gateway)
            print("\(added ? "trusted" : "already trusted"): \(verifying.keyID) (\(verifying.algorithm.rawValue)) for gateway \(gateway)")
        }
        do { try store.save(path: trust) } catch { throw Failure.run("\(error)") }
    }
}

struct TrustList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the trusted keys by gateway: kid, algorithm, how each became trusted, not-after.")

    @Option(help: "The trust store file (JSON).")
    var trust: String

    @Flag(help: "Print the store's JSON instead of a table.")
    var json = false

    func run() throws {
        let store: TrustStore
        do { store = try TrustStore.load(path: trust) } catch { throw Failure.usage("--trust \(error)") }
        if json {
            print(store.document, terminator: "")
            return
        }
        for gateway in store.gateways.keys.sorted() {
            for entry in store.gateways[gateway]! {
                let origin: String
                switch entry.origin {
                case .commissioned: origin = "commissioned"
                case .rotation(let statement): origin = "rotation from \(statement.previousKeyID)"
                }
                let limit = entry.notAfterMillis.map { "  not after \(TrustStore.formatTime($0))" } ?? ""
                print("\(gateway)  \(entry.key.keyID)  \(entry.key.algorithm.rawValue)  \(origin)  added \(TrustStore.formatTime(entry.addedMillis))\(limit)")
            }
        }
        if store.isEmpty { print("no trusted keys in \(trust)") }
    }
}
