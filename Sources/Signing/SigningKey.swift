import Crypto
import Foundation

/// The signature algorithms MeterGate signs readings with, by their JOSE names.
public enum SigningAlgorithm: String, Sendable, Hashable, CaseIterable, Codable {
    /// Ed25519 (RFC 8037), the default.
    case eddsa = "EdDSA"
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4); also the OCMF algorithm ECDSA-secp256r1-SHA256.
    case es256 = "ES256"
}

/// A private signing key and its algorithm.
public struct SigningKey: Sendable {
    enum Storage: Sendable {
        case ed25519(Curve25519.Signing.PrivateKey)
        case p256(P256.Signing.PrivateKey)
    }
    let storage: Storage

    init(storage: Storage) { self.storage = storage }

    public var algorithm: SigningAlgorithm {
        switch storage {
        case .ed25519: return .eddsa
        case .p256: return .es256
        }
    }

    /// Makes a new random key.
    public static func generate(_ algorithm: SigningAlgorithm) -> SigningKey {
        switch algorithm {
        case .eddsa: return SigningKey(storage: .ed25519(Curve25519.Signing.PrivateKey()))
        case .es256: return SigningKey(storage: .p256(P256.Signing.PrivateKey()))
        }
    }

    /// The public half.
    public var publicKey: VerifyingKey {
        switch storage {
        case .ed25519(let k): return VerifyingKey(storage: .ed25519(k.publicKey))
        case .p256(let k): return VerifyingKey(storage: .p256(k.publicKey))
        }
    }

    /// Signs `message`. EdDSA gives 64 bytes; ES256 gives the 64-byte raw r‖s form JWS uses.
    public func sign(_ message: some DataProtocol) throws -> [UInt8] {
        switch storage {
        case .ed25519(let k): return Array(try k.signature(for: message))
        case .p256(let k): return Array(try k.signature(for: message).rawRepresentation)
        }
    }

    /// Signs `message` with ES256 and returns the DER form OCMF uses. Nil for non-P-256 keys.
    public func signDER(_ message: some DataProtocol) throws -> [UInt8]? {
        guard case .p256(let k) = storage else { return nil }
        return Array(try k.signature(for: message).derRepresentation)
    }

    // MARK: PKCS#8

    /// The RFC 8410 PKCS#8 prefix of an Ed25519 private key; the 32-byte seed follows.
    static let ed25519PKCS8Prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]

    /// The key as PKCS#8 DER, the format of `-----BEGIN PRIVATE KEY-----` PEM files.
    public var pkcs8DER: [UInt8] {
        switch storage {
        case .ed25519(let k): return Self.ed25519PKCS8Prefix + Array(k.rawRepresentation)
        case .p256(let k): return Array(k.derRepresentation)
        }
    }

    /// The key as a PEM "PRIVATE KEY" block, readable by OpenSSL.
    public var pemRepresentation: String {
        PEM.encode(label: "PRIVATE KEY", der: pkcs8DER)
    }

    /// Reads a PEM "PRIVATE KEY" (PKCS#8) block holding an Ed25519 or P-256 key, or a SEC1 "EC PRIVATE KEY".
    public init(pem: String) throws(KeyFileError) {
        guard let block = PEM.decode(pem) else { throw pem.contains("-----BEGIN") && !pem.contains("-----END") ? .truncatedPEM : .notPEM }
        let der = block.der
        if der.count == 48, Array(der.prefix(16)) == Self.ed25519PKCS8Prefix {
            guard let k = try? Curve25519.Signing.PrivateKey(rawRepresentation: der.suffix(32)) else { throw .unsupportedKey("bad Ed25519 key bytes") }
            self.storage = .ed25519(k)
            return
        }
        if let k = try? P256.Signing.PrivateKey(pemRepresentation: pem) {
            self.storage = .p256(k)
            return
        }
        throw .unsupportedKey("\(block.label) of \(der.count) bytes is neither an Ed25519 nor a P-256 key")
    }
}

/// A public key that verifies MeterGate signatures, with the forms settlement systems import.
public struct VerifyingKey: Sendable, Hashable {
    enum Storage: Sendable {
        case ed25519(Curve25519.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
    }
    let storage: Storage
    /// The key id: the RFC 7638 JWK thumbprint (base64url SHA-256 of the canonical JWK), computed once because
    /// every verification looks its key up by it.
    public let keyID: String

    public var algorithm: SigningAlgorithm {
        switch storage {
        case .ed25519: return .eddsa
        case .p256: return .es256
        }
    }

    public static func == (lhs: VerifyingKey, rhs: VerifyingKey) -> Bool { lhs.spkiDER == rhs.spkiDER }
    public func hash(into hasher: inout Hasher) { hasher.combine(spkiDER) }

    static let ed25519SPKIPrefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]

    /// SubjectPublicKeyInfo DER (RFC 5280), as OCMF verifiers and OpenSSL take it.
    public var spkiDER: [UInt8] {
        switch storage {
        case .ed25519(let k): return Self.ed25519SPKIPrefix + Array(k.rawRepresentation)
        case .p256(let k): return Array(k.derRepresentation)
        }
    }

    /// Reads SubjectPublicKeyInfo DER of an Ed25519 or P-256 key.
    public init(spkiDER der: [UInt8]) throws(KeyFileError) {
        if der.count == 44, Array(der.prefix(12)) == Self.ed25519SPKIPrefix,
           let k = try? Curve25519.Signing.PublicKey(rawRepresentation: der.suffix(32)) {
            self.init(storage: .ed25519(k))
        } else if let k = try? P256.Signing.PublicKey(derRepresentation: der) {
            self.init(storage: .p256(k))
        } else {
            throw .unsupportedKey("SubjectPublicKeyInfo of \(der.count) bytes is neither Ed25519 nor P-256")
        }
    }

    init(storage: Storage) {
        self.storage = storage
        self.keyID = Self.thumbprint(Self.jwkRequiredMembers(storage))
    }

    /// The public key as a PEM "PUBLIC KEY" block.
    public var pemRepresentation: String { PEM.encode(label: "PUBLIC KEY", der: spkiDER) }

    /// The members of the JWK (RFC 7517) that identify the key, in the lexicographic order RFC 7638 needs.
    var jwkRequiredMembers: [(String, String)] { Self.jwkRequiredMembers(storage) }

    static func jwkRequiredMembers(_ storage: Storage) -> [(String, String)] {
        switch storage {
        case .ed25519(let k):
            return [("crv", "Ed25519"), ("kty", "OKP"), ("x", Base64URL.encode(k.rawRepresentation))]
        case .p256(let k):
            let point = Array(k.x963Representation)   // 0x04 ‖ x ‖ y
            return [("crv", "P-256"), ("kty", "EC"), ("x", Base64URL.encode(point[1...32])), ("y", Base64URL.encode(point[33...64]))]
        }
    }

    static func thumbprint(_ members: [(String, String)]) -> String {
        let canonical = "{" + members.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",") + "}"
        return Base64URL.encode(SHA256.hash(data: Array(canonical.utf8)))
    }

    /// The public JWK as one line of JSON, with `kid`, `alg` and `use`.
    public var jwkJSON: String {
        var members = jwkRequiredMembers
        members.append(("alg", algorithm.rawValue))
        members.append(("kid", keyID))
        members.append(("use", "sig"))
        members.sort { $0.0 < $1.0 }
        return "{" + members.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",") + "}"
    }

    /// Checks `signature` over `message` (raw r‖s for ES256). The corresponding operations are swift-crypto's
    /// `isValidSignature(_:for:)`.
    public func isValidSignature(_ signature: [UInt8], for message: some DataProtocol) -> Bool {
        switch storage {
        case .ed25519(let k): return k.isValidSignature(signature, for: message)
        case .p256(let k):
            guard let s = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return k.isValidSignature(s, for: message)
        }
    }

    /// Checks a DER-encoded ECDSA signature (the OCMF form). False for non-P-256 keys.
    public func isValidDERSignature(_ signature: [UInt8], for message: some DataProtocol) -> Bool {
        guard case .p256(let k) = storage, let s = try? P256.Signing.ECDSASignature(derRepresentation: signature) else { return false }
        return k.isValidSignature(s, for: message)
    }
}

/// PEM armour (RFC 7468).
enum PEM {
    static func encode(label: String, der: [UInt8]) -> String {
        let b64 = Data(der).base64EncodedString()
        var lines = ["-----BEGIN \(label)-----"]
        var index = b64.startIndex
        while index < b64.endIndex {
            let end = b64.index(index, offsetBy: 64, limitedBy: b64.endIndex) ?? b64.endIndex
            lines.append(String(b64[index..<end]))
            index = end
        }
        lines.append("-----END \(label)-----")
        return lines.joined(separator: "\n") + "\n"
    }

    static func decode(_ text: String) -> (label: String, der: [UInt8])? {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN ") && $0.hasSuffix("-----") }),
              let end = lines[begin...].firstIndex(where: { $0.hasPrefix("-----END ") }) else { return nil }
        let label = String(lines[begin].dropFirst(11).dropLast(5))
        guard let data = Data(base64Encoded: lines[(begin + 1)..<end].joined()) else { return nil }
        return (label, [UInt8](data))
    }
}
