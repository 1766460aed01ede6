/// What a settlement consumer believes, kept up to date from the keys topics: the trust store (saved back to its
/// file when a rotation taught it a key, so a restart remembers) and keys given for every gateway.
public struct TrustFollower: Sendable {
    public private(set) var store: TrustStore
    public let keys: KeySet
    /// Where the store is saved after it learned a key (nil: kept in memory only).
    public let path: String?
    /// Gateways whose keys topic has been read at least once: a record signed by a key not (yet) trusted waits
    /// for its gateway's announcement only until then.
    public private(set) var announced: Set<String> = []
    public private(set) var verifier: RecordVerifier

    public init(store: TrustStore, keys: KeySet, path: String?) {
        self.store = store
        self.keys = keys
        self.path = path
        self.verifier = RecordVerifier(trust: store, keys: keys)
    }

    /// Whether keys topics are worth reading: only a trust store can learn from them.
    public var followsAnnouncements: Bool { path != nil || !store.isEmpty }

    /// What one keys-topic message did.
    public struct Outcome: Sendable {
        public var learned: [TrustedKey] = []
        public var ignored: [String] = []
        /// Why the learned keys could not be saved (they are trusted for this run all the same).
        public var saveError: String?
    }

    /// Reads `text`, published on `gateway`'s keys topic, and follows its rotation statements.
    public mutating func announcement(_ text: String, gateway: String, nowMillis: Int64) -> Outcome {
        announced.insert(gateway)
        var outcome = Outcome()
        let parsed: KeysAnnouncement
        do { parsed = try KeysAnnouncement.parse(text, source: "metergate/v1/\(gateway)/keys") } catch {
            outcome.ignored.append(error.description)
            return outcome
        }
        let learned = store.learn(from: parsed, gateway: gateway, nowMillis: nowMillis)
        outcome.learned = learned.keys
        outcome.ignored = learned.ignored
        let untrusted = parsed.keys.keys.filter { store.trusted(keyID: $0.keyID, gateway: gateway) == nil && keys[$0.keyID] == nil }
        if !untrusted.isEmpty {
            outcome.ignored.append("announced but not trusted (no rotation statement from a trusted key): \(untrusted.map(\.keyID).joined(separator: ", "))")
        }
        guard !learned.keys.isEmpty else { return outcome }
        verifier = RecordVerifier(trust: store, keys: keys)
        if let path {
            // Another process may have saved keys it learned: merge with the file rather than overwrite it.
            var merged = (try? TrustStore.load(path: path)) ?? TrustStore()
            for (id, entries) in store.gateways { for entry in entries { merged.add(entry, gateway: id) } }
            do { try merged.save(path: path) } catch { outcome.saveError = error.description }
        }
        return outcome
    }
}
