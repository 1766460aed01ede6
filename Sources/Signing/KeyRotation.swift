import Foundation

/// Why a rotation statement could not be read or made.
public struct KeyRotationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

/// A gateway's signed word that its signing key moved from one key to the next: a compact JWS (RFC 7515)
/// signed by the previous key, whose payload names the gateway and carries the new public key as a JWK.
///
/// Settlement trusts the new key for that gateway only when the statement verifies with a key it already
/// trusts for the same gateway (docs/records.md §4). Header: `{"alg","kid": previous kid,"typ":
/// "metergate-key-rotation"}`; payload (canonical JSON): `{"gateway","issued": ms,"new_key": JWK,
/// "previous_kid","type":"metergate-key-rotation"}`.
public struct KeyRotationStatement: Sendable, Hashable {
    public static let type = "metergate-key-rotation"

    public var gateway: String
    /// The key that signed the statement (the JWS header's `kid`, repeated in the payload).
    public var previousKeyID: String
    public var newKey: VerifyingKey
    /// When the statement was made, ms since the Unix epoch.
    public var issuedMillis: Int64
    /// The compact serialization, as published.
    public var compact: String
    private var signingInput: [UInt8]
    private var signature: [UInt8]
    private var algorithm: SigningAlgorithm

    /// Signs a statement that `gateway` moves from `previous` to `next`.
    public static func make(gateway: String, from previous: SigningKey, to next: VerifyingKey,
                            issuedMillis: Int64) throws(KeyRotationError) -> KeyRotationStatement {
        let previousID = previous.publicKey.keyID
        guard previousID != next.keyID else { throw KeyRotationError(reason: "the new key is the previous key (\(previousID))") }
        let header = JSONValue.object([("alg", .string(previous.algorithm.rawValue)), ("kid", .string(previousID)),
                                       ("typ", .string(type))])
        let payload = JSONValue.object([
            ("gateway", .string(gateway)), ("issued", .integer(issuedMillis)), ("new_key", next.jwk),
            ("previous_kid", .string(previousID)), ("type", .string(type)),
        ])
        var input = Base64URL.encodeBytes(header.canonicalBytes)
        input.append(UInt8(ascii: "."))
        Base64URL.append(payload.canonicalBytes, to: &input)
        let signature: [UInt8]
        do { signature = try previous.sign(input) } catch { throw KeyRotationError(reason: "signing the statement failed: \(error)") }
        var compact = input
        compact.append(UInt8(ascii: "."))
        Base64URL.append(signature, to: &compact)
        return try KeyRotationStatement(compact: String(decoding: compact, as: UTF8.self))
    }

    /// Reads a statement (no signature check: see ``isSigned(by:)``). At most 8 KiB.
    public init(compact text: String) throws(KeyRotationError) {
        func fail(_ reason: String) -> KeyRotationError { KeyRotationError(reason: "rotation statement: \(reason)") }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count <= 8192 else { throw fail("longer than 8 KiB") }
        let jws: JWSRecord
        do { jws = try JWSRecord(Array(trimmed.utf8)) } catch { throw fail(error.description) }
        let payload: JSONValue
        do { payload = try JSONValue.parse(jws.payloadBytes) } catch { throw fail("payload: \(error)") }
        guard payload["type"]?.stringValue == Self.type else { throw fail("payload type is not \"\(Self.type)\"") }
        guard let gateway = payload["gateway"]?.stringValue, !gateway.isEmpty else { throw fail("no gateway") }
        guard let previous = payload["previous_kid"]?.stringValue, previous == jws.keyID else {
            throw fail("previous_kid does not name the key in the header (\(jws.keyID))")
        }
        guard case .number(let issuedText)? = payload["issued"], let issued = Int64(issuedText), issued >= 0 else {
            throw fail("issued is not a non-negative integer of milliseconds")
        }
        guard let jwk = payload["new_key"] else { throw fail("no new_key") }
        let newKey: VerifyingKey
        do { newKey = try VerifyingKey(jwk: jwk) } catch { throw fail("new_key: \(error.description)") }
        guard newKey.keyID != previous else { throw fail("the new key is the previous key") }
        self.gateway = gateway
        self.previousKeyID = previous
        self.newKey = newKey
        self.issuedMillis = issued
        self.compact = trimmed
        self.signingInput = jws.signingInput
        self.signature = jws.signature
        self.algorithm = jws.algorithm
    }

    /// Whether `key` (the previous key) signed this statement.
    public func isSigned(by key: VerifyingKey) -> Bool {
        key.keyID == previousKeyID && key.algorithm == algorithm && key.isValidSignature(signature, for: signingInput)
    }

    /// Reads a statement file (as `keygen --rotate-from` writes it).
    public static func load(path: String) throws(KeyRotationError) -> KeyRotationStatement {
        guard let data = FileManager.default.contents(atPath: path) else { throw KeyRotationError(reason: "\(path): cannot read") }
        guard data.count <= 8192 else { throw KeyRotationError(reason: "\(path): larger than 8 KiB; not a rotation statement") }
        do { return try KeyRotationStatement(compact: String(decoding: data, as: UTF8.self)) } catch {
            throw KeyRotationError(reason: "\(path): \(error.reason)")
        }
    }
}

/// What a gateway publishes, retained, on its keys topic: its public keys (a JWK Set) and the rotation
/// statements that link them. Announcements only: a receiver trusts a key through its trust store.
public struct KeysAnnouncement: Sendable {
    public var keys: KeySet
    public var rotations: [KeyRotationStatement]
    /// Statements that could not be read, with why.
    public var unreadable: [String]

    public init(keys: KeySet, rotations: [KeyRotationStatement] = []) {
        self.keys = keys
        self.rotations = rotations
        self.unreadable = []
    }

    /// The JWK Set document with a `rotations` member (an array of compact JWS) when there are any; RFC 7517
    /// allows further members in a JWK Set and JOSE libraries ignore them.
    public var document: String {
        guard !rotations.isEmpty else { return keys.document }
        let value = JSONValue.object([("keys", keys.jwkArray), ("rotations", .array(rotations.map { .string($0.compact) }))])
        return String(decoding: value.canonicalBytes, as: UTF8.self)
    }

    /// Reads a keys-topic payload (at most 256 KiB, at most 64 statements).
    public static func parse(_ text: String, source: String) throws(KeySetError) -> KeysAnnouncement {
        guard text.utf8.count <= 256 * 1024 else { throw KeySetError(source: source, reason: "larger than 256 KiB; not a key set") }
        var announcement = KeysAnnouncement(keys: try KeySet.parse(text, source: source))
        guard let value = try? JSONValue.parse(Array(text.utf8)), let member = value["rotations"] else { return announcement }
        guard case .array(let items) = member, items.count <= 64 else {
            throw KeySetError(source: source, reason: "rotations must be an array of at most 64 compact JWS strings")
        }
        for item in items {
            guard let compact = item.stringValue else { announcement.unreadable.append("a rotation entry is not a string"); continue }
            do { announcement.rotations.append(try KeyRotationStatement(compact: compact)) } catch {
                announcement.unreadable.append(error.reason)
            }
        }
        return announcement
    }
}

extension VerifyingKey {
    /// The public JWK with `alg`, `kid` and `use`, as a JSON value.
    public var jwk: JSONValue {
        var members = jwkRequiredMembers.map { ($0.0, JSONValue.string($0.1)) }
        members.append(("alg", .string(algorithm.rawValue)))
        members.append(("kid", .string(keyID)))
        members.append(("use", .string("sig")))
        return .object(members)
    }
}

extension KeySet {
    /// The `keys` array of the JWK Set.
    var jwkArray: JSONValue { .array(keys.map(\.jwk)) }
}
