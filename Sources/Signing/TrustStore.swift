import Foundation

/// Why a trust store could not be read or written.
public struct TrustStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// A public key trusted for one gateway.
public struct TrustedKey: Sendable, Hashable {
    public enum Origin: Sendable, Hashable {
        /// Given out of band (commissioning): `metergate trust add`.
        case commissioned
        /// Learned from a rotation statement signed by a key already trusted for the gateway.
        case rotation(KeyRotationStatement)
    }

    public var key: VerifyingKey
    /// Records whose interval ends after this (ms since the Unix epoch) do not verify with the key.
    public var notAfterMillis: Int64?
    public var origin: Origin
    public var addedMillis: Int64

    public init(key: VerifyingKey, notAfterMillis: Int64? = nil, origin: Origin = .commissioned, addedMillis: Int64) {
        self.key = key
        self.notAfterMillis = notAfterMillis
        self.origin = origin
        self.addedMillis = addedMillis
    }
}

/// Settlement's trust: for each gateway id, the public keys that may sign its records (DESIGN.md, Trust).
///
/// A key trusted for one gateway never verifies another's records. Keys announced on the keys topic become
/// trusted only through a rotation statement signed by a key already trusted for that gateway (``learn``).
/// Its file is JSON: `{"metergate_trust":1,"gateways":{"gw1":[{"kid","jwk","origin","added","not_after"?,
/// "rotation"?}]}}`, written atomically (temporary file, fsync, rename).
public struct TrustStore: Sendable {
    public private(set) var gateways: [String: [TrustedKey]] = [:]

    public init() {}

    /// The entry for `keyID` among `gateway`'s trusted keys.
    public func trusted(keyID: String, gateway: String) -> TrustedKey? {
        gateways[gateway]?.first { $0.key.keyID == keyID }
    }

    public var isEmpty: Bool { gateways.values.allSatisfy(\.isEmpty) }

    /// Adds `entry` for `gateway`; false when that key is trusted for it already.
    @discardableResult
    public mutating func add(_ entry: TrustedKey, gateway: String) -> Bool {
        guard trusted(keyID: entry.key.keyID, gateway: gateway) == nil else { return false }
        gateways[gateway, default: []].append(entry)
        return true
    }

    /// What one keys-topic announcement taught: keys now trusted, and statements passed over with why.
    public struct Learned: Sendable {
        public var keys: [TrustedKey] = []
        public var ignored: [String] = []
    }

    /// Follows the rotation statements of `announcement`, published by `gateway`: a statement for this gateway
    /// whose signer is trusted for it (and was not past its not-after when the statement was issued) makes
    /// its new key trusted, inheriting the signer's not-after. Chains of rotations are followed in any order.
    public mutating func learn(from announcement: KeysAnnouncement, gateway: String, nowMillis: Int64) -> Learned {
        var learned = Learned()
        learned.ignored = announcement.unreadable
        var open = announcement.rotations.filter { statement in
            guard statement.gateway == gateway else {
                learned.ignored.append("a rotation statement for gateway '\(statement.gateway)' arrived on \(gateway)'s keys topic")
                return false
            }
            return trusted(keyID: statement.newKey.keyID, gateway: gateway) == nil
        }
        var progress = true
        while progress {
            progress = false
            for (index, statement) in open.enumerated().reversed() {
                guard let signer = trusted(keyID: statement.previousKeyID, gateway: gateway) else { continue }
                open.remove(at: index)
                guard statement.isSigned(by: signer.key) else {
                    learned.ignored.append("the rotation to \(statement.newKey.keyID) does not verify with \(statement.previousKeyID)")
                    continue
                }
                if let limit = signer.notAfterMillis, statement.issuedMillis > limit {
                    learned.ignored.append("the rotation to \(statement.newKey.keyID) was issued after \(statement.previousKeyID)'s not-after")
                    continue
                }
                let entry = TrustedKey(key: statement.newKey, notAfterMillis: signer.notAfterMillis, origin: .rotation(statement),
                                       addedMillis: nowMillis)
                if add(entry, gateway: gateway) {
                    learned.keys.append(entry)
                    progress = true
                }
            }
        }
        for statement in open {
            learned.ignored.append("the rotation to \(statement.newKey.keyID) is signed by \(statement.previousKeyID), not trusted for \(gateway)")
        }
        return learned
    }

    // MARK: - File

    /// Reads a trust store file (at most 4 MiB).
    public static func load(path: String) throws(TrustStoreError) -> TrustStore {
        func fail(_ reason: String) -> TrustStoreError { TrustStoreError(path: path, reason: reason) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw fail("cannot read (make one with: metergate trust add --trust \(path) --gateway GW --key PUBLIC_KEY)")
        }
        guard data.count <= 4 << 20 else { throw fail("larger than 4 MiB; not a trust store") }
        let root: JSONValue
        do { root = try JSONValue.parse([UInt8](data)) } catch { throw fail("not JSON: \(error)") }
        guard case .number("1")? = root["metergate_trust"] else { throw fail("not a MeterGate trust store (\"metergate_trust\": 1 missing)") }
        guard case .object(let gateways)? = root["gateways"] else { throw fail("\"gateways\" must be an object of gateway id to key list") }
        var store = TrustStore()
        for (gateway, list) in gateways {
            guard case .array(let entries) = list else { throw fail("gateways.\(gateway) must be an array") }
            for (n, item) in entries.enumerated() {
                let at = "gateways.\(gateway)[\(n)]"
                guard let jwk = item["jwk"] else { throw fail("\(at): no jwk") }
                let key: VerifyingKey
                do { key = try VerifyingKey(jwk: jwk) } catch { throw fail("\(at).jwk: \(error.description)") }
                if let kid = item["kid"]?.stringValue, kid != key.keyID { throw fail("\(at): kid \(kid) is not the key's thumbprint \(key.keyID)") }
                func time(_ name: String) throws(TrustStoreError) -> Int64? {
                    guard let value = item[name] else { return nil }
                    guard let text = value.stringValue, let millis = TrustStore.parseTime(text) else {
                        throw fail("\(at).\(name): expected a UTC time such as 2027-01-01T00:00:00Z")
                    }
                    return millis
                }
                var origin = TrustedKey.Origin.commissioned
                if let compact = item["rotation"]?.stringValue {
                    do { origin = .rotation(try KeyRotationStatement(compact: compact)) } catch { throw fail("\(at).rotation: \(error.reason)") }
                }
                store.add(TrustedKey(key: key, notAfterMillis: try time("not_after"), origin: origin, addedMillis: try time("added") ?? 0),
                          gateway: gateway)
            }
        }
        return store
    }

    /// The file's JSON, one key per line so that a diff shows what changed.
    public var document: String {
        var lines: [String] = []
        for gateway in gateways.keys.sorted() {
            let entries = gateways[gateway]!.map { entry -> String in
                var members: [(String, JSONValue)] = [
                    ("added", .string(Self.formatTime(entry.addedMillis))), ("jwk", entry.key.jwk), ("kid", .string(entry.key.keyID)),
                ]
                if let limit = entry.notAfterMillis { members.append(("not_after", .string(Self.formatTime(limit)))) }
                switch entry.origin {
                case .commissioned: members.append(("origin", .string("commissioned")))
                case .rotation(let statement):
                    members.append(("origin", .string("rotation")))
                    members.append(("rotation", .string(statement.compact)))
                }
                return "    " + String(decoding: JSONValue.object(members).canonicalBytes, as: UTF8.self)
            }
            lines.append("  " + String(decoding: JSONValue.string(gateway).canonicalBytes, as: UTF8.self) + ": [\n"
                         + entries.joined(separator: ",\n") + "\n  ]")
        }
        return "{\"metergate_trust\": 1, \"gateways\": {\n" + lines.joined(separator: ",\n") + "\n}}\n"
    }

    /// Writes the file atomically: a temporary file beside it, `fsync`, `rename` (mode 0644: public keys).
    public func save(path: String) throws(TrustStoreError) {
        let temporary = "\(path).tmp-\(getpid())"
        let bytes = Array(document.utf8)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TrustStoreError(path: path, reason: "open(\(temporary)): \(String(cString: strerror(errno)))") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                close(fd)
                unlink(temporary)
                throw TrustStoreError(path: path, reason: "write(\(temporary)): \(String(cString: strerror(code)))")
            }
            written += n
        }
        let synced = fsync(fd) == 0 ? 0 : errno
        close(fd)
        guard synced == 0 else {
            unlink(temporary)
            throw TrustStoreError(path: path, reason: "fsync(\(temporary)): \(String(cString: strerror(synced)))")
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw TrustStoreError(path: path, reason: "rename(\(temporary)): \(String(cString: strerror(code)))")
        }
    }

    /// `2027-01-01` or `2027-01-01T00:00:00Z` as ms since the Unix epoch (UTC).
    public static func parseTime(_ text: String) -> Int64? {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = text.count == 10 ? [.withFullDate] : [.withInternetDateTime]
        guard let date = formatter.date(from: text) else { return nil }
        return Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    public static func formatTime(_ millis: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }
}
