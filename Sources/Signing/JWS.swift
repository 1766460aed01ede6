/// Why an envelope (JWS or OCMF) could not be read.
public enum EnvelopeError: Error, Hashable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedAlgorithm(String)

    public var description: String {
        switch self {
        case .malformed(let why): return why
        case .unsupportedAlgorithm(let why): return why
        }
    }
}

/// A JWS in compact serialization (RFC 7515 §7.1): `BASE64URL(header).BASE64URL(payload).BASE64URL(signature)`.
///
/// The protected header is `{"alg":"EdDSA"|"ES256","kid":"<RFC 7638 thumbprint>"}`; the signing input is the
/// ASCII of the first two parts; ES256 signatures are the 64-byte r‖s form (RFC 7518 §3.4).
public struct JWSRecord: Sendable {
    public var algorithm: SigningAlgorithm
    public var keyID: String
    /// The decoded payload: the exact signed record bytes.
    public var payloadBytes: [UInt8]
    public var signature: [UInt8]
    /// `BASE64URL(header).BASE64URL(payload)`, the bytes the signature covers.
    public var signingInput: [UInt8]

    /// The protected header bytes for `algorithm` and `keyID` (JCS canonical, so always the same text).
    public static func header(algorithm: SigningAlgorithm, keyID: String) -> [UInt8] {
        JSONValue.object([("alg", .string(algorithm.rawValue)), ("kid", .string(keyID))]).canonicalBytes
    }

    /// `BASE64URL(header).`: how every signing input of `algorithm` and `keyID` starts.
    public static func signingInputPrefix(algorithm: SigningAlgorithm, keyID: String) -> [UInt8] {
        var prefix = Base64URL.encodeBytes(header(algorithm: algorithm, keyID: keyID))
        prefix.append(UInt8(ascii: "."))
        return prefix
    }

    /// Signs `payload` and returns the compact serialization. `keyID` defaults to the key's thumbprint;
    /// a caller signing many records passes it in, computed once.
    public static func sign(payload: [UInt8], with key: SigningKey, keyID: String? = nil) throws -> [UInt8] {
        try sign(payload: payload, with: key, prefix: signingInputPrefix(algorithm: key.algorithm, keyID: keyID ?? key.publicKey.keyID))
    }

    /// Signs `payload` with `prefix` from ``signingInputPrefix(algorithm:keyID:)`` for `key` (a signer makes
    /// it once), building the serialization in one buffer.
    public static func sign(payload: [UInt8], with key: SigningKey, prefix: [UInt8]) throws -> [UInt8] {
        var out = prefix
        out.reserveCapacity(prefix.count + (payload.count * 4 + 2) / 3 + 90)
        Base64URL.append(payload, to: &out)
        let signature = try key.sign(out)
        out.append(UInt8(ascii: "."))
        Base64URL.append(signature, to: &out)
        return out
    }

    /// Splits and decodes a compact JWS. Rejects headers with members other than `alg`, `kid` and `typ`
    /// (in particular `crit` and `b64`), and algorithms other than EdDSA and ES256 (so never `none`).
    public init(_ line: some Collection<UInt8>) throws(EnvelopeError) {
        let bytes = Array(line)
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("a compact JWS has three base64url parts separated by '.'") }
        guard let headerBytes = Base64URL.decode(bytes: parts[0]) else { throw .malformed("JWS header is not base64url") }
        guard let payload = Base64URL.decode(bytes: parts[1]) else { throw .malformed("JWS payload is not base64url") }
        guard let signature = Base64URL.decode(bytes: parts[2]) else { throw .malformed("JWS signature is not base64url") }
        let header: JSONValue
        do { header = try JSONValue.parse(headerBytes) } catch { throw .malformed("JWS header: \(error)") }
        guard case .object(let members) = header else { throw .malformed("JWS header is not a JSON object") }
        for (key, _) in members {
            switch key {
            case "alg", "kid", "typ": continue
            default: throw .malformed("JWS header member '\(key)' is not understood")
            }
        }
        guard let alg = header["alg"]?.stringValue else { throw .malformed("JWS header has no alg") }
        guard let algorithm = SigningAlgorithm(rawValue: alg) else {
            throw .unsupportedAlgorithm("JWS alg '\(alg)' is not accepted (EdDSA or ES256)")
        }
        guard let kid = header["kid"]?.stringValue else { throw .malformed("JWS header has no kid") }
        self.algorithm = algorithm
        self.keyID = kid
        self.payloadBytes = payload
        self.signature = signature
        self.signingInput = Array(bytes[parts[0].startIndex..<parts[1].endIndex])
    }

    /// Checks the signature with `key`; false when the key's algorithm differs from the header's.
    public func isValid(with key: VerifyingKey) -> Bool {
        key.algorithm == algorithm && key.isValidSignature(signature, for: signingInput)
    }
}
