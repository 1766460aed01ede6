import Dispatch
import Crypto
import Foundation
import MeterCore
import SQLite
import Signing

/// The settlement ledger in a SQLite file: one connection, owned by this actor, on its own serial queue.
///
/// Keyed by (gateway, meter, epoch, seq), as DESIGN.md's dedupe rule says. The verified envelope is
/// kept next to the row so any figure can be proven again with `metergate verify`.
public actor SQLiteLedgerStore: LedgerStorage {
    private let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let path: String
    public nonisolated let tariff: Tariff
    public nonisolated var location: String { path }
    private let db: SQLiteDatabase
    private let insertReading: SQLiteStatement
    private let findReading: SQLiteStatement
    private let insertFork: SQLiteStatement
    private let insertBreak: SQLiteStatement
    private let insertRejected: SQLiteStatement
    private let claimReplayRange: SQLiteStatement
    /// Nil when opened read-only on a ledger written before `store_lost` existed (no `stated_lost` table).
    private let insertStatedLost: SQLiteStatement?
    /// Received seqs per stream, loaded at open, for gap detection.
    private var received: [StreamKey: SeqSet] = [:]
    /// Seqs per stream that a stored record states, signed, its gateway's store lost (`store_lost`): never
    /// asked for again. Loaded at open.
    private var statedLost: [StreamKey: SeqSet] = [:]

    static let schema = """
        CREATE TABLE IF NOT EXISTS readings(
            gateway TEXT NOT NULL, meter TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
            hash BLOB NOT NULL, prev BLOB NOT NULL, key_id TEXT NOT NULL, envelope TEXT NOT NULL,
            start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,
            import_mwh INTEGER NOT NULL, export_mwh INTEGER NOT NULL, quality TEXT NOT NULL,
            tariff TEXT NOT NULL, currency TEXT NOT NULL, price_scaled INTEGER NOT NULL, price_precision INTEGER NOT NULL,
            amount_exact INTEGER NOT NULL, amount_scale INTEGER NOT NULL,
            record BLOB NOT NULL, received_ms INTEGER NOT NULL, pricing_error TEXT,
            export_price_scaled INTEGER, export_amount_exact INTEGER, export_amount_scale INTEGER,
            PRIMARY KEY (gateway, meter, epoch, seq)) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS readings_by_start ON readings(start_ms);
        CREATE TABLE IF NOT EXISTS forks(
            gateway TEXT NOT NULL, meter TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
            stored_hash BLOB NOT NULL, other_hash BLOB NOT NULL, other_record BLOB NOT NULL, seen_ms INTEGER NOT NULL,
            UNIQUE (gateway, meter, epoch, seq, other_hash));
        CREATE TABLE IF NOT EXISTS chain_breaks(
            gateway TEXT NOT NULL, meter TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
            reason TEXT NOT NULL, seen_ms INTEGER NOT NULL,
            UNIQUE (gateway, meter, epoch, seq, reason));
        CREATE TABLE IF NOT EXISTS stated_lost(
            gateway TEXT NOT NULL, meter TEXT NOT NULL, epoch TEXT NOT NULL, stated_by_seq INTEGER NOT NULL,
            from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL, seen_ms INTEGER NOT NULL,
            PRIMARY KEY (gateway, meter, epoch, stated_by_seq)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS rejected(
            id INTEGER PRIMARY KEY, topic TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL, seen_ms INTEGER NOT NULL,
            payload_bytes INTEGER, payload_sha256 BLOB);
        """

    /// The ledger's schema steps. A new column or table is a new step at the end; a step never changes once released.
    static let migrator = SQLiteMigrator([
        .init(version: 1, name: "readings, forks, chain breaks, stated losses, rejected payloads") { db throws(SQLiteError) in
            try db.execute(schema)
            // Ledgers made before the schema was versioned: the columns added since their tables were made.
            // Bounded rejected payloads: the two columns that describe the whole payload.
            try db.addColumn("payload_bytes", to: "rejected", definition: "INTEGER")
            try db.addColumn("payload_sha256", to: "rejected", definition: "BLOB")
            // A reading that cannot be priced, stored with its error.
            try db.addColumn("pricing_error", to: "readings", definition: "TEXT")
            // Priced export (feed-in): earlier rows read as export earning nothing.
            try db.addColumn("export_price_scaled", to: "readings", definition: "INTEGER")
            try db.addColumn("export_amount_exact", to: "readings", definition: "INTEGER")
            try db.addColumn("export_amount_scale", to: "readings", definition: "INTEGER")
        },
        .init(version: 2, name: "replay claims: one ledger process asks for a gap") { db throws(SQLiteError) in
            try db.execute(replayClaimsSchema)
        },
    ])

    static let replayClaimsSchema = """
        CREATE TABLE IF NOT EXISTS replay_claims(
            gateway TEXT NOT NULL, meter TEXT NOT NULL, epoch TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL,
            claimed_by TEXT NOT NULL, until_ms INTEGER NOT NULL,
            PRIMARY KEY (gateway, meter, epoch, from_seq)) WITHOUT ROWID;
        """

    /// Opens (or creates) the ledger at `path` on a dispatch queue, never on Swift's cooperative pool.
    public static func open(path: String, tariff: Tariff = .none, readOnly: Bool = false) async throws(LedgerError) -> SQLiteLedgerStore {
        let result: Result<SQLiteLedgerStore, LedgerError> = await withCheckedContinuation { continuation in
            DispatchQueue(label: "metergate.ledger.open").async {
                do throws(LedgerError) {
                    continuation.resume(returning: .success(try SQLiteLedgerStore(path: path, tariff: tariff, readOnly: readOnly)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Opens (or creates) the ledger at `path`. Blocks: call ``open(path:tariff:readOnly:)`` from async code.
    /// `readOnly` (for exports) never creates or changes anything, and refuses a file that holds no ledger.
    public init(path: String, tariff: Tariff = .none, readOnly: Bool = false) throws(LedgerError) {
        executor = SerialQueueExecutor(label: "metergate.ledger")
        self.path = path
        self.tariff = tariff
        do {
            db = try SQLiteDatabase(path: path, create: !readOnly, readOnly: readOnly)
            // Consumers of one shared-subscription group may share the file: wait for each other's writes.
            _ = try db.scalarInt("PRAGMA busy_timeout=10000")
            if readOnly {
                guard try db.hasTable("readings"), try db.hasTable("forks") else {
                    throw LedgerError.notALedger(path: path)
                }
            } else {
                _ = try db.scalarText("PRAGMA journal_mode=WAL")
                try db.execute("PRAGMA synchronous=FULL")
                do { try Self.migrator.migrate(db) } catch { throw LedgerError.schema(error) }
            }
            insertReading = try db.prepare("""
                INSERT INTO readings(gateway, meter, epoch, seq, hash, prev, key_id, envelope, start_ms, end_ms, import_mwh, export_mwh,
                    quality, tariff, currency, price_scaled, price_precision, amount_exact, amount_scale, record, received_ms, pricing_error,
                    export_price_scaled, export_amount_exact, export_amount_scale)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)
                """)
            findReading = try db.prepare("SELECT hash, prev FROM readings WHERE gateway = ?1 AND meter = ?2 AND epoch = ?3 AND seq = ?4")
            insertFork = try db.prepare("""
                INSERT OR IGNORE INTO forks(gateway, meter, epoch, seq, stored_hash, other_hash, other_record, seen_ms)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                """)
            insertBreak = try db.prepare("INSERT OR IGNORE INTO chain_breaks(gateway, meter, epoch, seq, reason, seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            insertRejected = readOnly ? try db.prepare("SELECT 1", persistent: false) : try db.prepare(
                "INSERT INTO rejected(topic, reason, payload, seen_ms, payload_bytes, payload_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            // Taken when free, expired, or already ours; RETURNING says whether the row is now ours.
            claimReplayRange = readOnly ? try db.prepare("SELECT 1", persistent: false) : try db.prepare("""
                INSERT INTO replay_claims(gateway, meter, epoch, from_seq, to_seq, claimed_by, until_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                ON CONFLICT (gateway, meter, epoch, from_seq) DO UPDATE SET to_seq = excluded.to_seq, claimed_by = excluded.claimed_by,
                    until_ms = excluded.until_ms
                WHERE replay_claims.until_ms <= ?8 OR replay_claims.claimed_by = excluded.claimed_by
                RETURNING claimed_by
                """)
            let hasStatedLost = try db.hasTable("stated_lost")
            insertStatedLost = hasStatedLost ? try db.prepare("""
                INSERT OR IGNORE INTO stated_lost(gateway, meter, epoch, stated_by_seq, from_seq, to_seq, seen_ms)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                """) : nil
            let all = try db.prepare("SELECT gateway, meter, epoch, seq FROM readings", persistent: false)
            var loaded: [StreamKey: SeqSet] = [:]
            while try all.step() {
                let key = StreamKey(gateway: all.text(0) ?? "", meter: all.text(1) ?? "", epoch: all.text(2) ?? "")
                loaded[key, default: SeqSet()].insert(UInt64(all.int64(3)))
            }
            received = loaded
            if hasStatedLost { statedLost = try Self.loadStatedLost(db, stream: nil) }
        } catch let error as LedgerError {
            throw error
        } catch let error as SQLiteError {
            throw .database(error)
        } catch {
            fatalError("unreachable: \(error)")
        }
    }

    /// Stores one verified record (idempotent); `envelope` is the exact bytes received.
    /// Stores a batch of verified records in one write transaction (one sync to disk for all of them), each
    /// idempotently; the outcomes in the batch's order.
    public func add(_ batch: [LedgerEntry]) throws(LedgerError) -> [LedgerOutcome] {
        guard !batch.isEmpty else { return [] }
        do throws(SQLiteError) {
            // The checks and the inserts in one write transaction: processes of a shared group may write the same file.
            try db.execute("BEGIN IMMEDIATE")
            do throws(SQLiteError) {
                var results: [(outcome: LedgerOutcome, stream: StreamKey, seq: UInt64, neighbours: [UInt64], stated: ClosedRange<UInt64>?)] = []
                for entry in batch {
                    let (outcome, neighbours, stated) = try store(entry.verified, envelope: entry.envelope, receivedMillis: entry.receivedMillis)
                    results.append((outcome, entry.verified.record.stream, entry.verified.record.seq, neighbours, stated))
                }
                try db.execute("COMMIT")
                for result in results {
                    received[result.stream, default: SeqSet()].insert(result.seq)
                    // Stored seqs next to this one, whichever process stored them: another ledger process's work is
                    // known without reading the stream again.
                    for seq in result.neighbours { received[result.stream, default: SeqSet()].insert(seq) }
                    if let stated = result.stated { statedLost[result.stream, default: SeqSet()].insert(stated) }
                }
                return results.map(\.outcome)
            } catch {
                if !db.isAutocommit { try? db.execute("ROLLBACK") }
                throw error
            }
        } catch {
            throw .database(error)
        }
    }

    /// One record, inside the caller's transaction.
    private func store(_ verified: VerifiedRecord, envelope: [UInt8], receivedMillis: Int64) throws(SQLiteError)
        -> (LedgerOutcome, neighbours: [UInt64], stated: ClosedRange<UInt64>?) {
        let r = verified.record
        let stream = r.stream
        let priced = PricedReading(r, tariff: tariff)
        let outcome: LedgerOutcome
        var newlyStated: ClosedRange<UInt64>?
        var neighbours: [UInt64] = []
        if let stored = try lookup(stream, seq: r.seq) {
            if stored.hash == verified.hash {
                outcome = .duplicate
            } else {
                try bind(insertFork, stream, r.seq)
                try insertFork.bind(stored.hash, at: 5)
                try insertFork.bind(verified.hash, at: 6)
                try insertFork.bind(envelope, at: 7)
                try insertFork.bind(receivedMillis, at: 8)
                try run(insertFork)
                outcome = .fork(storedHash: stored.hash)
            }
        } else {
            try bind(insertReading, stream, r.seq)
            try insertReading.bind(verified.hash, at: 5)
            try insertReading.bind(r.prev, at: 6)
            try insertReading.bind(r.keyID, at: 7)
            try insertReading.bind(verified.envelope.rawValue, at: 8)
            try insertReading.bind(r.startMillis, at: 9)
            try insertReading.bind(r.endMillis, at: 10)
            try insertReading.bind(r.importDelta.rawValue, at: 11)
            try insertReading.bind(r.exportDelta.rawValue, at: 12)
            try insertReading.bind(r.quality.rawValue, at: 13)
            try insertReading.bind(tariff.name, at: 14)
            try insertReading.bind(tariff.currency, at: 15)
            try insertReading.bind(priced.price.scaled, at: 16)
            try insertReading.bind(Int64(priced.price.precision), at: 17)
            try insertReading.bind(priced.amount.exact, at: 18)
            try insertReading.bind(Int64(priced.amount.scale), at: 19)
            try insertReading.bind(envelope, at: 20)
            try insertReading.bind(receivedMillis, at: 21)
            if let error = priced.pricingError { try insertReading.bind(error, at: 22) } else { try insertReading.bindNull(at: 22) }
            try insertReading.bind(priced.exportPrice.scaled, at: 23)
            try insertReading.bind(priced.exportAmount.exact, at: 24)
            try insertReading.bind(Int64(priced.exportAmount.scale), at: 25)
            try run(insertReading)
            let links = try checkLinks(verified, receivedMillis: receivedMillis)
            neighbours = links.neighbours
            // A statement whose record does not link to the record before it explains nothing.
            if let lost = r.storeLost, !links.prevBroken, let insert = insertStatedLost {
                try bind(insert, stream, r.seq)
                try insert.bind(Int64(bitPattern: lost.seqs.lowerBound), at: 5)
                try insert.bind(Int64(bitPattern: lost.seqs.upperBound), at: 6)
                try insert.bind(receivedMillis, at: 7)
                try run(insert)
                newlyStated = lost.seqs
            }
            outcome = .stored(chainProblems: links.problems)
        }
        return (outcome, neighbours, newlyStated)
    }

    /// Checks the record's links to its stored neighbours and records breaks; `prevBroken` when the record's
    /// own `prev` does not link to the stored record before it; `neighbours`, the seqs beside it that are stored.
    private func checkLinks(_ verified: VerifiedRecord, receivedMillis: Int64) throws(SQLiteError)
        -> (problems: [String], prevBroken: Bool, neighbours: [UInt64]) {
        let r = verified.record
        var problems: [String] = []
        var neighbours: [UInt64] = []
        if r.seq == 1, r.prev != StreamPosition.zeroHash {
            problems.append(LedgerRules.notAChainStart)
        }
        if r.seq > 1, let before = try lookup(r.stream, seq: r.seq - 1) {
            neighbours.append(r.seq - 1)
            if before.hash != r.prev { problems.append(LedgerRules.prevMismatch(seq: r.seq)) }
        }
        let prevBroken = !problems.isEmpty
        if let after = try lookup(r.stream, seq: r.seq + 1) {
            neighbours.append(r.seq + 1)
            if after.prev != verified.hash { problems.append(LedgerRules.prevMismatch(seq: r.seq + 1)) }
        }
        for problem in problems {
            try bind(insertBreak, r.stream, r.seq)
            try insertBreak.bind(problem, at: 5)
            try insertBreak.bind(receivedMillis, at: 6)
            try run(insertBreak)
        }
        return (problems, prevBroken, neighbours)
    }

    /// Keeps what identifies a payload that could not be verified (its first bytes, length and SHA-256) with the
    /// reason: evidence of what arrived, bounded whatever its size.
    public func reject(topic: String, payload: [UInt8], reason: String, receivedMillis: Int64) throws(LedgerError) {
        do throws(SQLiteError) {
            try insertRejected.bind(LedgerRules.keptTopic(topic), at: 1)
            try insertRejected.bind(LedgerRules.keptReason(reason), at: 2)
            try insertRejected.bind(Array(payload.prefix(LedgerRules.rejectedPrefixBytes)), at: 3)
            try insertRejected.bind(receivedMillis, at: 4)
            try insertRejected.bind(Int64(payload.count), at: 5)
            try insertRejected.bind(Array(SHA256.hash(data: payload)), at: 6)
            try run(insertRejected)
        } catch { throw .database(error) }
    }

    /// The missing seq ranges of `stream` below the highest received, less the seqs its gateway stated lost:
    /// those can never be replayed, so are not asked for.
    public func gaps(of stream: StreamKey, fromFirstSeq: Bool = true) -> [ClosedRange<UInt64>] {
        received[stream]?.gaps(fromFirstSeq: fromFirstSeq, excluding: statedLost[stream] ?? SeqSet()) ?? []
    }

    /// Per stream, the seqs that a stored record states, signed, its gateway's store lost (`store_lost`) and
    /// that were never received: explicit gaps, not asked for.
    public func statedLostSeqs() -> [StreamKey: [ClosedRange<UInt64>]] {
        var result: [StreamKey: [ClosedRange<UInt64>]] = [:]
        for (stream, stated) in statedLost {
            let missing = stated.ranges.flatMap { (received[stream] ?? SeqSet()).missing(in: $0) }
            if !missing.isEmpty { result[stream] = missing }
        }
        return result
    }

    /// The `stated_lost` table, of one stream or of all.
    private static func loadStatedLost(_ db: SQLiteDatabase, stream: StreamKey?) throws(SQLiteError) -> [StreamKey: SeqSet] {
        let s = try db.prepare("""
            SELECT gateway, meter, epoch, from_seq, to_seq FROM stated_lost
            WHERE ?1 IS NULL OR (gateway = ?1 AND meter = ?2 AND epoch = ?3)
            """, persistent: false)
        if let stream {
            try s.bind(stream.gateway, at: 1)
            try s.bind(stream.meter, at: 2)
            try s.bind(stream.epoch, at: 3)
        }
        var loaded: [StreamKey: SeqSet] = [:]
        while try s.step() {
            let key = StreamKey(gateway: s.text(0) ?? "", meter: s.text(1) ?? "", epoch: s.text(2) ?? "")
            loaded[key, default: SeqSet()].insert(UInt64(s.int64(3))...UInt64(s.int64(4)))
        }
        return loaded
    }

    /// The gaps of `stream` after reading its seqs again from the file: another consumer of a shared
    /// group may have filled them. Only called for streams with open gaps.
    public func refreshedGaps(of stream: StreamKey, fromFirstSeq: Bool = true) throws(LedgerError) -> [ClosedRange<UInt64>] {
        do throws(SQLiteError) {
            let s = try db.prepare("SELECT seq FROM readings WHERE gateway = ?1 AND meter = ?2 AND epoch = ?3", persistent: false)
            try s.bind(stream.gateway, at: 1)
            try s.bind(stream.meter, at: 2)
            try s.bind(stream.epoch, at: 3)
            var seqs = SeqSet()
            while try s.step() { seqs.insert(UInt64(s.int64(0))) }
            received[stream] = seqs
            if insertStatedLost != nil { statedLost[stream] = try Self.loadStatedLost(db, stream: stream)[stream] }
            return gaps(of: stream, fromFirstSeq: fromFirstSeq)
        } catch { throw .database(error) }
    }

    public func claimReplay(of stream: StreamKey, seqs: ClosedRange<UInt64>, by claimant: String, nowMillis: Int64,
                            untilMillis: Int64) throws(LedgerError) -> Bool {
        do throws(SQLiteError) {
            try bind(claimReplayRange, stream, seqs.lowerBound)
            try claimReplayRange.bind(Int64(bitPattern: seqs.upperBound), at: 5)
            try claimReplayRange.bind(claimant, at: 6)
            try claimReplayRange.bind(untilMillis, at: 7)
            try claimReplayRange.bind(nowMillis, at: 8)
            defer { claimReplayRange.reset() }
            return try claimReplayRange.step()
        } catch { throw .database(error) }
    }

    /// The newest epoch of each (gateway, meter), by the last record received: the one a `cmd/replay` reaches.
    public func latestStreams() throws(LedgerError) -> [StreamKey] {
        do throws(SQLiteError) {
            let s = try db.prepare("""
                SELECT gateway, meter, epoch FROM (
                    SELECT gateway, meter, epoch, row_number() OVER (PARTITION BY gateway, meter ORDER BY max(received_ms) DESC, epoch) AS n
                    FROM readings GROUP BY gateway, meter, epoch)
                WHERE n = 1 ORDER BY gateway, meter
                """, persistent: false)
            var result: [StreamKey] = []
            while try s.step() { result.append(StreamKey(gateway: s.text(0) ?? "", meter: s.text(1) ?? "", epoch: s.text(2) ?? "")) }
            return result
        } catch { throw .database(error) }
    }

    /// The seqs received of each stream.
    public func receivedSeqs() -> [StreamKey: SeqSet] { received }

    /// Ledger rows whose interval starts in [from, to) (UTC milliseconds), by start, gateway, meter.
    public func rows(fromMillis: Int64 = .min, toMillis: Int64 = .max) throws(LedgerError) -> [LedgerRow] {
        do throws(SQLiteError) {
            let s = try db.prepare("""
                SELECT gateway, meter, epoch, seq, start_ms, end_ms, import_mwh, export_mwh, quality, tariff, currency,
                       price_scaled, price_precision, amount_exact, amount_scale, pricing_error,
                       export_price_scaled, export_amount_exact, export_amount_scale
                FROM readings WHERE start_ms >= ?1 AND start_ms < ?2 ORDER BY start_ms, gateway, meter, epoch, seq
                """, persistent: false)
            try s.bind(fromMillis, at: 1)
            try s.bind(toMillis, at: 2)
            var rows: [LedgerRow] = []
            while try s.step() {
                rows.append(LedgerRow(
                    gateway: s.text(0) ?? "", meter: s.text(1) ?? "", epoch: s.text(2) ?? "", seq: UInt64(s.int64(3)),
                    startMillis: s.int64(4), endMillis: s.int64(5), importMilliwattHours: s.int64(6), exportMilliwattHours: s.int64(7),
                    quality: s.text(8) ?? "", tariff: s.text(9) ?? "", currency: s.text(10) ?? "",
                    price: Price(scaled: s.int64(11), precision: Int(s.int64(12))),
                    amount: Amount(exact: s.int64(13), scale: Int(s.int64(14))), pricingError: s.isNull(15) ? nil : s.text(15),
                    exportPrice: Price(scaled: s.isNull(16) ? 0 : s.int64(16), precision: Int(s.int64(12))),
                    exportAmount: Amount(exact: s.isNull(17) ? 0 : s.int64(17), scale: s.isNull(18) ? 0 : Int(s.int64(18)))))
            }
            return rows
        } catch { throw .database(error) }
    }

    /// Every rejected payload kept, oldest first.
    public func rejections() throws(LedgerError) -> [LedgerRejection] {
        do throws(SQLiteError) {
            let s = try db.prepare("SELECT topic, reason, payload, payload_bytes, payload_sha256 FROM rejected ORDER BY id", persistent: false)
            var result: [LedgerRejection] = []
            while try s.step() {
                result.append(LedgerRejection(topic: s.text(0) ?? "", reason: s.text(1) ?? "", prefix: s.blob(2),
                                        payloadBytes: s.isNull(3) ? nil : s.int64(3), payloadSHA256: s.isNull(4) ? nil : s.blob(4)))
            }
            return result
        } catch { throw .database(error) }
    }

    /// Every fork recorded.
    public func forks() throws(LedgerError) -> [LedgerFork] {
        do throws(SQLiteError) {
            let s = try db.prepare("SELECT gateway, meter, epoch, seq, stored_hash, other_hash FROM forks ORDER BY gateway, meter, epoch, seq", persistent: false)
            var result: [LedgerFork] = []
            while try s.step() {
                result.append(LedgerFork(stream: StreamKey(gateway: s.text(0) ?? "", meter: s.text(1) ?? "", epoch: s.text(2) ?? ""),
                                         seq: UInt64(s.int64(3)), storedHash: s.blob(4), otherHash: s.blob(5)))
            }
            return result
        } catch { throw .database(error) }
    }

    /// Counts of the ledger's tables: readings, forks, chain breaks, rejected payloads.
    public func counts() throws(LedgerError) -> LedgerCounts {
        do throws(SQLiteError) {
            return LedgerCounts(readings: try db.scalarInt("SELECT count(*) FROM readings") ?? 0, forks: try db.scalarInt("SELECT count(*) FROM forks") ?? 0,
                                chainBreaks: try db.scalarInt("SELECT count(*) FROM chain_breaks") ?? 0,
                                rejected: try db.scalarInt("SELECT count(*) FROM rejected") ?? 0)
        } catch { throw .database(error) }
    }

    /// The connection closes when the store is released.
    public func close() {}

    // MARK: Statement helpers

    private func lookup(_ stream: StreamKey, seq: UInt64) throws(SQLiteError) -> (hash: [UInt8], prev: [UInt8])? {
        try bind(findReading, stream, seq)
        defer { findReading.reset() }
        guard try findReading.step() else { return nil }
        return (findReading.blob(0), findReading.blob(1))
    }

    private func bind(_ s: SQLiteStatement, _ stream: StreamKey, _ seq: UInt64) throws(SQLiteError) {
        try s.bind(stream.gateway, at: 1)
        try s.bind(stream.meter, at: 2)
        try s.bind(stream.epoch, at: 3)
        try s.bind(Int64(bitPattern: seq), at: 4)
    }

    private func run(_ s: SQLiteStatement) throws(SQLiteError) {
        defer { s.reset() }
        try s.step()
    }
}
