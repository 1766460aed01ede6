import Crypto
import Foundation
import MeterCore
import Outbox
import SQLite
import MeterGateTesting
import TestSupport
import Testing

/// The outbox's file across versions: stores from before the schema was versioned, from a newer build, and
/// damaged files opened for inspection, each with the error that names what is wrong.
@Suite(.timeLimit(.minutes(5))) struct OutboxSchemaTests {
    @Test func aStoreFromBeforeVersionedSchemasIsMigratedAndItsStreamContinues() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        // The tables as the first releases made them: no digest, no interval end, no key id; user_version 0.
        let old = try SQLiteDatabase(path: path)
        try old.execute("""
            CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
            CREATE TABLE streams(meter TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_hash BLOB NOT NULL) WITHOUT ROWID;
            CREATE TABLE records(id INTEGER PRIMARY KEY, meter TEXT NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL,
                appended_at INTEGER NOT NULL, delivered_at INTEGER, size INTEGER NOT NULL, hash BLOB NOT NULL, bytes BLOB NOT NULL,
                UNIQUE(meter, seq));
            INSERT INTO meta VALUES ('epoch', 'e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0');
            """)
        let firstBytes = Array("m|e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0|1|\(hex(StreamPosition.zeroHash))|".utf8)
        let firstHash = Array(SHA256.hash(data: firstBytes))
        let insert = try old.prepare("INSERT INTO records(meter, seq, state, appended_at, size, hash, bytes) VALUES ('m', 1, 0, 0, 100, ?1, ?2)")
        try insert.bind(firstHash, at: 1)
        try insert.bind(firstBytes, at: 2)
        try insert.run()
        let stream = try old.prepare("INSERT INTO streams VALUES ('m', 1, ?1)")
        try stream.bind(firstHash, at: 1)
        try stream.run()
        #expect(try old.userVersion() == 0)

        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(store.epoch == "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0")
        #expect(!store.openReport.created)
        _ = try await store.append(meter: "m", chainedRecord("m"))
        let records = try await store.records(meter: "m", seqs: 1...5, limit: 5)
        expectChain(records)
        await store.close()
        let peek = try SQLiteDatabase(path: path, readOnly: true)
        #expect(try peek.userVersion() == 3)
        #expect(try peek.hasColumn("digest", in: "records") && peek.hasColumn("last_kid", in: "streams"))
        #expect(try peek.scalarInt("SELECT count(*) FROM records WHERE digest IS NULL") == 1, "the old row keeps no digest")
    }

    /// The records as a build before step 3 kept them, their delivery state in two columns of their own.
    static let oldRows = "SELECT id, meter, seq, state, appended_at, delivered_at, size, hex(hash), hex(bytes), hex(digest), interval_end FROM records ORDER BY id"
    /// The same columns read from a store of step 3: pending while `pending` holds the record, delivered when then.
    static let currentRows = """
        SELECT r.id, r.meter, r.seq, CASE WHEN EXISTS(SELECT 1 FROM pending p WHERE p.record_id = r.id) THEN 0 ELSE 2 END, r.appended_at,
            (SELECT d.delivered_at FROM deliveries d WHERE d.record_id = r.id), r.size, hex(r.hash), hex(r.bytes), hex(r.digest), r.interval_end
        FROM records r ORDER BY r.id
        """

    func rows(_ db: SQLiteDatabase, _ sql: String) throws -> [String] {
        let select = try db.prepare(sql, persistent: false)
        var out: [String] = []
        while try select.step() { out.append((Int32(0)..<11).map { select.isNull($0) ? "NULL" : select.text($0) ?? "" }.joined(separator: "|")) }
        return out
    }

    /// A store of six records (two delivered) as a build at schema `version` (1 or 2) left it: the delivery state back
    /// in the records' columns, the records keyed as that version keyed them.
    func makeOldStore(at path: String, version: Int) async throws -> SQLiteDatabase {
        let made = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        for _ in 0..<3 { _ = try await made.append(["a", "b"].map { AppendRequest(meter: $0, build: chainedRecord($0)) }) }
        let claimed = try await made.claimPending(limit: 2)
        try await made.markDelivered(claimed.map(\.id), at: Date())
        await made.close()
        let old = try SQLiteDatabase(path: path)
        try old.execute("""
            BEGIN;
            CREATE TABLE records_old(id INTEGER PRIMARY KEY, meter TEXT NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL,
                appended_at INTEGER NOT NULL, delivered_at INTEGER, size INTEGER NOT NULL, hash BLOB NOT NULL, bytes BLOB NOT NULL,
                digest BLOB, interval_end INTEGER, UNIQUE(\(version == 1 ? "meter, seq" : "seq, meter")));
            INSERT INTO records_old SELECT r.id, r.meter, r.seq, CASE WHEN EXISTS(SELECT 1 FROM pending p WHERE p.record_id = r.id) THEN 0 ELSE 2 END,
                r.appended_at, (SELECT d.delivered_at FROM deliveries d WHERE d.record_id = r.id), r.size, r.hash, r.bytes, r.digest, r.interval_end
                FROM records r;
            DROP TABLE records;
            DROP TABLE pending;
            DROP TABLE deliveries;
            ALTER TABLE records_old RENAME TO records;
            CREATE INDEX records_by_state ON records(state, id);
            PRAGMA user_version = \(version);
            COMMIT;
            """)
        return old
    }

    /// Step 2 keys the records by (seq, meter), so that one commit of every meter's record touches a few key pages
    /// rather than one per meter: a store of step 1 keeps every row, id, state and byte, and its streams go on.
    @Test func aStoreOfStepOneIsKeyedAgainAndKeepsEveryRow() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let old = try await makeOldStore(at: path, version: 1)
        let before = try rows(old, Self.oldRows)
        #expect(before.count == 6)

        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        let stats = try await store.stats()
        #expect(stats.delivered == 2 && stats.pending == 4)
        _ = try await store.append(meter: "a", chainedRecord("a"))
        expectChain(try await store.records(meter: "a", seqs: 1...9, limit: 9))
        await store.close()
        let peek = try SQLiteDatabase(path: path, readOnly: true)
        #expect(try peek.userVersion() == 3)
        #expect(try Array(rows(peek, Self.currentRows).prefix(6)) == before, "every row as it was, ids included")
        let keyed = try peek.scalarText("SELECT sql FROM sqlite_master WHERE name = 'records'") ?? ""
        #expect(keyed.contains("UNIQUE(seq, meter)"), "\(keyed)")
        // The key still refuses a second record under one (meter, seq).
        let twice = try SQLiteDatabase(path: path)
        #expect(throws: SQLiteError.self) {
            try twice.execute("INSERT INTO records(meter, seq, appended_at, size, hash, bytes) VALUES ('a', 1, 0, 1, x'00', x'00')")
        }
    }

    /// Step 3 moves the delivery state out of the records: `pending` and `deliveries` rows per sink, every record of an
    /// older store owed to or delivered by MQTT, the records' rows written once from then on. Rows an older build left
    /// inflight are pending again and counted in the open report.
    @Test func aStoreOfStepTwoKeepsItsDeliveryStateInTablesOfItsOwn() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let old = try await makeOldStore(at: path, version: 2)
        let before = try rows(old, Self.oldRows)
        try old.execute("UPDATE records SET state = 1 WHERE id = (SELECT max(id) FROM records)")

        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration(retention: .seconds(60)))
        #expect(store.openReport.inflightReset == 1)
        let stats = try await store.stats()
        #expect(stats.delivered == 2 && stats.pending == 4)
        let claimed = try await store.claimPending(limit: 10)
        #expect(claimed.map(\.id) == [3, 4, 5, 6], "the pending records, oldest first, the one left inflight among them")
        let peek = try SQLiteDatabase(path: path, readOnly: true)
        #expect(try peek.userVersion() == 3)
        #expect(try rows(peek, Self.currentRows) == before, "every row as it was, ids, states and delivery times included")
        #expect(try !peek.hasColumn("state", in: "records") && !peek.hasColumn("delivered_at", in: "records"))
        #expect(try peek.scalarInt("SELECT count(*) FROM sqlite_master WHERE name = 'records_by_state'") == 0)
        #expect(try peek.scalarInt("SELECT count(*) FROM pending WHERE sink = 'mqtt'") == 4)
        #expect(try peek.scalarInt("SELECT count(*) FROM deliveries WHERE sink = 'mqtt'") == 2)

        // Delivered marks write the sink's rows, not the record's; retention deletes the record and, by the trigger, its rows.
        try await store.markDelivered([3, 4], at: Date())
        #expect(try peek.scalarInt("SELECT count(*) FROM deliveries") == 4)
        let report = try await store.maintain(now: Date().addingTimeInterval(120))
        #expect(report.expired == 4)
        #expect(try peek.scalarInt("SELECT count(*) FROM records") == 2)
        #expect(try peek.scalarInt("SELECT count(*) FROM deliveries") == 0, "a deleted record leaves no delivery row")
        #expect(try peek.scalarInt("SELECT count(*) FROM pending") == 2)
        await store.close()
    }

    @Test func aStoreWrittenByANewerBuildIsRefusedAndLeftWhereItIs() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let made = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        _ = try await made.append(meter: "m", chainedRecord("m"))
        await made.close()
        try SQLiteDatabase(path: path).execute("PRAGMA user_version = 42")

        let error = await #expect(throws: OutboxError.self) {
            _ = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        }
        guard case .schema(.newerSchema(let named, let found, _))? = error else {
            Issue.record("expected a newer-schema refusal, got \(String(describing: error))")
            return
        }
        #expect(named == path && found == 42)
        #expect(error?.description.contains("newer MeterGate") == true)
        // Not treated as damage: nothing moved aside, the record still there.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("damaged") }.isEmpty)
        #expect(try SQLiteDatabase(path: path, readOnly: true).scalarInt("SELECT count(*) FROM records") == 1)
    }

    @Test func aDamagedFileOpenedForInspectionIsReportedNotMoved() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.write("outbox.sqlite", String(repeating: "not a database ", count: 400))
        let error = await #expect(throws: OutboxError.self) {
            _ = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration(), options: .init(inspectOnly: true))
        }
        guard case .damaged(let named, let reason)? = error else {
            Issue.record("expected .damaged, got \(String(describing: error))")
            return
        }
        #expect(named == path && reason.contains("SQLITE_NOTADB"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["outbox.sqlite"])
    }

    @Test func anUnreadableGapStatementRowIsNamedWithItsValues() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let made = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        await made.close()
        try SQLiteDatabase(path: path).execute("INSERT INTO loss_statements VALUES ('m', 5, 3, 'quota', NULL)")
        let error = await #expect(throws: OutboxError.self) {
            _ = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        }
        guard case .unreadableRow(let table, let detail)? = error else {
            Issue.record("expected .unreadableRow, got \(String(describing: error))")
            return
        }
        #expect(table == "loss_statements" && detail.contains("5…3"))
    }

    @Test func aMoveAsideThatFailsNamesRenameAndItsErrno() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        // A file name of 240 bytes: its damaged-file name (29 more) is over NAME_MAX, so rename(2) fails
        // (ENAMETOOLONG) even for root.
        let name = String(repeating: "o", count: 233) + ".sqlite"
        let path = dir.write(name, String(repeating: "not a database ", count: 400))
        let error = await #expect(throws: OutboxError.self) {
            _ = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration(), clock: { Date(timeIntervalSince1970: 0) })
        }
        guard case .fileCall(let named, let call, let code, let doing)? = error else {
            Issue.record("expected .fileCall, got \(String(describing: error))")
            return
        }
        #expect(named == path && call == "rename" && code == ENAMETOOLONG)
        #expect(doing.contains("moving the damaged"))
        #expect(error?.description.contains("errno \(ENAMETOOLONG)") == true)
        #expect(FileManager.default.fileExists(atPath: path), "the damaged file is still there, untouched")
    }
}
