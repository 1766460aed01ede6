import Crypto
import Foundation

/// Why a key or key set could not be read.
public struct KeySetError: Error, Hashable, Sendable, CustomStringConvertible {
    public var source: String
    public var reason: String
    public var description: String { "\(source): \(reason)" }
}

/// The public keys a verifier accepts, by key id: the current key and every earlier one (rotation).
///
/// Its document form is an RFC 7517 JWK Set, `{"keys":[JWK, …]}`, each JWK with `kid`, `alg` and `use`:
/// what the gateway publishes retained on `metergate/v1/<gateway>/keys`, and what any JOSE library imports.
public struct KeySet: Sendable, Hashable {
    /// Keys in the order given (newest first, by convention), without repeats.
    public private(set) var keys: [VerifyingKey]
    private var byID: [String: VerifyingKey]

    /// A set of `keys`; repeats are dropped, order is kept.
    public init(_ keys: [VerifyingKey] = []) {
        self.keys = []
        self.byID = [:]
        for key in keys { insert(key) }
    }

    /// Adds `key` unless a key with its id is present.
    public mutating func insert(_ key: VerifyingKey) {
        let id = key.keyID
        guard byID[id] == nil else { return }
        byID[id] = key
        keys.append(key)
    }

    /// Adds every key of `other`.
    public mutating func formUnion(_ other: KeySet) { for key in other.keys { insert(key) } }

    /// The key with id `keyID` (its RFC 7638 thumbprint), or nil.
    public subscript(keyID: String) -> VerifyingKey? { byID[keyID] }

    public var isEmpty: Bool { keys.isEmpty }

    /// The JWK Set document, canonical JSON on one line.
    public var document: String {
        String(decoding: JSONValue.object([("keys", jwkArray)]).canonicalBytes, as: UTF8.self)
    }

    /// Reads keys from text in any of the forms MeterGate prints or publishes: PEM blocks (`PUBLIC KEY`,
    /// `PRIVATE KEY`, `EC PRIVATE KEY`; the public half of a private key), a JWK Set `{"keys":[…]}`, a JWK,
    /// JWKs one per line, or SPKI DER hex one per line (as `keygen` prints after `spki-der-hex:`).
    public static func parse(_ text: String, source: String) throws(KeySetError) -> KeySet {
        func fail(_ reason: String) -> KeySetError { KeySetError(source: source, reason: reason) }
        var set = KeySet()
        if text.contains("-----BEGIN ") {
            for block in PEM.decodeAll(text) {
                switch block.label {
                case "PUBLIC KEY":
                    do { set.insert(try VerifyingKey(spkiDER: block.der)) } catch { throw fail(error.description) }
                case "PRIVATE KEY", "EC PRIVATE KEY":
                    let pem = PEM.encode(label: block.label, der: block.der)
                    do { set.insert(try SigningKey(pem: pem).publicKey) } catch { throw fail(error.description) }
                default:
                    throw fail("PEM block '\(block.label)' is not a key (expected PUBLIC KEY or PRIVATE KEY)")
                }
            }
            guard !set.isEmpty else { throw fail("no PEM key block could be read") }
            return set
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw fail("empty: no key found") }
        if trimmed.hasPrefix("{") {
            // One JSON document (a JWK Set or a JWK), or one JWK per line.
            if let whole = try? JSONValue.parse(Array(trimmed.utf8)) {
                try set.insertJSON(whole, fail: fail)
            } else {
                for (n, line) in trimmed.split(whereSeparator: \.isNewline).enumerated() where !line.allSatisfy(\.isWhitespace) {
                    let value: JSONValue
                    do { value = try JSONValue.parse(Array(line.utf8)) } catch { throw fail("line \(n + 1): \(error)") }
                    try set.insertJSON(value, fail: fail)
                }
            }
            return set
        }
        for (n, line) in trimmed.split(whereSeparator: \.isNewline).enumerated() {
            var hex = line.trimmingCharacters(in: .whitespaces)
            if hex.hasPrefix("spki-der-hex:") { hex = hex.dropFirst("spki-der-hex:".count).trimmingCharacters(in: .whitespaces) }
            if hex.isEmpty { continue }
            guard let der = [UInt8](hex: hex) else {
                throw fail("line \(n + 1) is neither PEM, JSON (JWK or JWK Set) nor SPKI DER hex")
            }
            do { set.insert(try VerifyingKey(spkiDER: der)) } catch { throw fail("line \(n + 1): \(error.description)") }
        }
        return set
    }

    /// Reads a key file (see ``parse(_:source:)``). The corresponding C calls are `open` and `read`, through Foundation.
    public static func load(path: String) throws(KeySetError) -> KeySet {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw KeySetError(source: path, reason: "cannot read: \((error as NSError).localizedDescription)")
        }
        guard data.count <= 1 << 20 else { throw KeySetError(source: path, reason: "larger than 1 MiB; not a key file") }
        return try parse(String(decoding: data, as: UTF8.self), source: path)
    }

    private mutating func insertJSON(_ value: JSONValue, fail: (String) -> KeySetError) throws(KeySetError) {
        if case .array(let items)? = value["keys"] {
            guard !items.isEmpty else { throw fail("the JWK Set has no keys") }
            for item in items {
                do { insert(try VerifyingKey(jwk: item)) } catch { throw fail(error.description) }
            }
        } else {
            do { insert(try VerifyingKey(jwk: value)) } catch { throw fail(error.description) }
        }
    }
}

extension VerifyingKey {
    /// Reads a public JWK (RFC 7517): OKP/Ed25519 or EC/P-256. A `kid` member must equal the RFC 7638
    /// thumbprint, which is how MeterGate names keys; an `alg` member must match the key type.
    public init(jwk: JSONValue) throws(KeyFileError) {
        guard case .object = jwk else { throw .unsupportedKey("a JWK must be a JSON object") }
        let kty = jwk["kty"]?.stringValue
        let crv = jwk["crv"]?.stringValue
        func coordinate(_ name: String) throws(KeyFileError) -> [UInt8] {
            guard let s = jwk[name]?.stringValue, let b = Base64URL.decode(s), b.count == 32 else {
                throw .unsupportedKey("JWK member '\(name)' must be 32 bytes of base64url")
            }
            return b
        }
        switch (kty, crv) {
        case ("OKP", "Ed25519"):
            let x = try coordinate("x")
            guard let k = try? Curve25519.Signing.PublicKey(rawRepresentation: x) else { throw .unsupportedKey("bad Ed25519 JWK") }
            self.init(storage: .ed25519(k))
        case ("EC", "P-256"):
            let point = [0x04] + (try coordinate("x")) + (try coordinate("y"))
            guard let k = try? P256.Signing.PublicKey(x963Representation: point) else { throw .unsupportedKey("JWK point is not on P-256") }
            self.init(storage: .p256(k))
        default:
            throw .unsupportedKey("JWK kty '\(kty ?? "?")' crv '\(crv ?? "?")' is neither OKP/Ed25519 nor EC/P-256")
        }
        if let alg = jwk["alg"]?.stringValue, alg != algorithm.rawValue {
            throw .unsupportedKey("JWK alg '\(alg)' does not fit a \(crv ?? "?") key (expected \(algorithm.rawValue))")
        }
        if let kid = jwk["kid"]?.stringValue, kid != keyID {
            throw .unsupportedKey("JWK kid '\(kid)' is not the key's RFC 7638 thumbprint \(keyID)")
        }
    }
}

extension PEM {
    /// Every PEM block in `text`, in order.
    static func decodeAll(_ text: String) -> [(label: String, der: [UInt8])] {
        var blocks: [(String, [UInt8])] = []
        var label: String?
        var body = ""
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if label == nil, line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") {
                label = String(line.dropFirst(11).dropLast(5))
                body = ""
            } else if let current = label, line.hasPrefix("-----END ") {
                if let data = Data(base64Encoded: body) { blocks.append((current, [UInt8](data))) }
                label = nil
            } else if label != nil {
                body += line
            }
        }
        return blocks
    }
}
