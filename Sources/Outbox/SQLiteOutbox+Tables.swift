import Foundation
import MeterCore
import SQLite

extension SQLiteOutbox {
    /// The outbox's schema steps. A new column or table is a new step at the end; a step never changes once released.
    static let migrator = SQLiteMigrator([
        .init(version: 1, name: "records, streams, saved state, gap statements") { db throws(SQLiteError) in
            try db.execute(schema)
            // Stores made before the schema was versioned: the columns added since their tables were made.
            // Old rows keep NULL: no digest to check, no interval end, no key id known.
            try db.addColumn("digest", to: "records", definition: "BLOB")
            try db.addColumn("interval_end", to: "records", definition: "INTEGER")
            try db.addColumn("last_kid", to: "streams", definition: "TEXT")
        },
        .init(version: 2, name: "records keyed by (seq, meter)") { db throws(SQLiteError) in
            try db.execute(rekeyRecords)
        },
        .init(version: 3, name: "delivery state per sink in tables of its own") { db throws(SQLiteError) in
            try db.execute(deliveryTables)
        },
    ])

    /// A record's row no longer changes once written: what each sink still owes is a row of `pending`, what it delivered
    /// a row of `deliveries`. A delivered mark then writes two small rows rather than the record's page again, and a
    /// second sink needs no change of the records. Every record so far was owed to the one sink there was, MQTT.
    static let deliveryTables = """
        CREATE TABLE pending(record_id INTEGER NOT NULL, sink TEXT NOT NULL, PRIMARY KEY(record_id, sink)) WITHOUT ROWID;
        CREATE TABLE deliveries(record_id INTEGER NOT NULL, sink TEXT NOT NULL, delivered_at INTEGER NOT NULL,
            PRIMARY KEY(record_id, sink)) WITHOUT ROWID;
        INSERT INTO pending(record_id, sink) SELECT id, 'mqtt' FROM records WHERE state <> 2 ORDER BY id;
        INSERT INTO deliveries(record_id, sink, delivered_at)
            SELECT id, 'mqtt', coalesce(delivered_at, appended_at) FROM records WHERE state = 2 ORDER BY id;
        DROP INDEX records_by_state;
        ALTER TABLE records DROP COLUMN state;
        ALTER TABLE records DROP COLUMN delivered_at;
        CREATE TRIGGER records_deleted AFTER DELETE ON records BEGIN
            DELETE FROM pending WHERE record_id = old.id;
            DELETE FROM deliveries WHERE record_id = old.id;
        END;
        """

    /// A commit holds one record of each meter, all at about the same seq: keyed (meter, seq), the key index took
    /// one leaf page per meter into every commit, and those pages went through the WAL and back at each
    /// checkpoint. Keyed (seq, meter), a commit's keys sit side by side. A UNIQUE constraint cannot be dropped, so
    /// the table is made again, ids kept.
    static let rekeyRecords = """
        CREATE TABLE records_rekeyed(\(recordColumns), UNIQUE(seq, meter));
        INSERT INTO records_rekeyed(id, meter, seq, state, appended_at, delivered_at, size, hash, bytes, digest, interval_end)
            SELECT id, meter, seq, state, appended_at, delivered_at, size, hash, bytes, digest, interval_end FROM records ORDER BY id;
        DROP TABLE records;
        ALTER TABLE records_rekeyed RENAME TO records;
        CREATE INDEX records_by_state ON records(state, id);
        """

    /// The records' columns as step 1 made them; step 2 keeps them. Frozen, like the steps that use them.
    static let recordColumns = """
        id INTEGER PRIMARY KEY, meter TEXT NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL, appended_at INTEGER NOT NULL, \
        delivered_at INTEGER, size INTEGER NOT NULL, hash BLOB NOT NULL, bytes BLOB NOT NULL, digest BLOB, interval_end INTEGER
        """

    /// The tables as step 1 makes them (step 2 keys the records again, step 3 moves their delivery state out).
    static let schema = """
        CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS streams(meter TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_hash BLOB NOT NULL, last_kid TEXT) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS records(\(recordColumns), UNIQUE(meter, seq));
        CREATE INDEX IF NOT EXISTS records_by_state ON records(state, id);
        CREATE TABLE IF NOT EXISTS saved_state(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS loss_statements(
            meter TEXT NOT NULL,
            from_seq INTEGER NOT NULL,
            to_seq INTEGER NOT NULL,
            cause TEXT NOT NULL,
            carried_by INTEGER);
        """

    /// The prepared statements, made once. Those about delivery serve one sink (``OutboxConfiguration/sink``), bound
    /// as their last parameter; a record is unsent while any sink still owes it (a row in `pending`).
    final class Statements {
        let database: SQLiteDatabase
        let sink: String
        let begin, commit, syncNormal, syncFull: SQLiteStatement
        let insert, insertPending, upsertStream: SQLiteStatement
        let saveState, selectState: SQLiteStatement
        let selectPendingAbove, selectPendingByID, deletePending, insertDelivery, selectRange: SQLiteStatement
        let expireDelivered, scanDelivered, pruneDeliveredUpTo, scanPending, dropPending: SQLiteStatement
        let deleteLossStatements, insertLossStatement, selectUnsentSeq: SQLiteStatement

        init(_ db: SQLiteDatabase, sink: String) throws(SQLiteError) {
            database = db
            self.sink = sink
            begin = try db.prepare("BEGIN IMMEDIATE")
            commit = try db.prepare("COMMIT")
            syncNormal = try db.prepare("PRAGMA synchronous=NORMAL")
            syncFull = try db.prepare("PRAGMA synchronous=FULL")
            saveState = try db.prepare("INSERT INTO saved_state(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            selectState = try db.prepare("SELECT value FROM saved_state WHERE key = ?1")
            insert = try db.prepare("""
                INSERT INTO records(meter, seq, appended_at, size, hash, bytes, digest, interval_end) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                """)
            insertPending = try db.prepare("INSERT INTO pending(record_id, sink) VALUES(?1, ?2)")
            upsertStream = try db.prepare("""
                INSERT INTO streams(meter, last_seq, last_hash, last_kid) VALUES(?1, ?2, ?3, ?4)
                ON CONFLICT(meter) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash, last_kid = excluded.last_kid
                """)
            // CROSS JOIN keeps `pending` the outer loop: its key is the claim order.
            selectPendingAbove = try db.prepare("""
                SELECT r.id, r.meter, r.seq, r.appended_at, r.hash, r.bytes, r.interval_end FROM pending p CROSS JOIN records r ON r.id = p.record_id
                WHERE p.record_id > ?1 AND p.sink = ?3 ORDER BY p.record_id LIMIT ?2
                """)
            selectPendingByID = try db.prepare("""
                SELECT r.id, r.meter, r.seq, r.appended_at, r.hash, r.bytes, r.interval_end FROM pending p CROSS JOIN records r ON r.id = p.record_id
                WHERE p.record_id = ?1 AND p.sink = ?2
                """)
            deletePending = try db.prepare("DELETE FROM pending WHERE record_id = ?1 AND sink = ?2 RETURNING (SELECT size FROM records WHERE id = ?1)")
            insertDelivery = try db.prepare("INSERT INTO deliveries(record_id, sink, delivered_at) VALUES(?1, ?2, ?3)")
            selectRange = try db.prepare("""
                SELECT r.id, r.seq, EXISTS(SELECT 1 FROM pending p WHERE p.record_id = r.id AND p.sink = ?5), r.appended_at, r.hash, r.bytes
                FROM records r WHERE r.meter = ?1 AND r.seq BETWEEN ?2 AND ?3 ORDER BY r.seq LIMIT ?4
                """)
            // A record leaves by retention once no sink owes it and the last delivery is older than the cut-off.
            expireDelivered = try db.prepare("""
                DELETE FROM records WHERE id IN (SELECT record_id FROM deliveries GROUP BY record_id HAVING max(delivered_at) < ?1)
                AND id NOT IN (SELECT record_id FROM pending) RETURNING size
                """)
            scanDelivered = try db.prepare("SELECT id, size FROM records WHERE id NOT IN (SELECT record_id FROM pending) ORDER BY id")
            pruneDeliveredUpTo = try db.prepare("DELETE FROM records WHERE id <= ?1 AND id NOT IN (SELECT record_id FROM pending) RETURNING size")
            scanPending = try db.prepare("""
                SELECT r.id, r.meter, r.seq, r.size FROM pending p CROSS JOIN records r ON r.id = p.record_id WHERE p.sink = ?1 ORDER BY p.record_id
                """)
            dropPending = try db.prepare("DELETE FROM records WHERE id = ?1 AND id IN (SELECT record_id FROM pending) RETURNING size")
            deleteLossStatements = try db.prepare("DELETE FROM loss_statements WHERE meter = ?1")
            insertLossStatement = try db.prepare("INSERT INTO loss_statements(meter, from_seq, to_seq, cause, carried_by) VALUES(?1, ?2, ?3, ?4, ?5)")
            selectUnsentSeq = try db.prepare("SELECT 1 FROM records r CROSS JOIN pending p ON p.record_id = r.id WHERE r.meter = ?1 AND r.seq = ?2")
        }
    }


    static func meta(_ db: SQLiteDatabase, _ key: String) throws(SQLiteError) -> String? {
        let statement = try db.prepare("SELECT value FROM meta WHERE key = ?1", persistent: false)
        try statement.bind(key, at: 1)
        return try statement.step() ? statement.text(0) : nil
    }

    static func setMeta(_ db: SQLiteDatabase, _ key: String, _ value: String) throws(SQLiteError) {
        let statement = try db.prepare("INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", persistent: false)
        try statement.bind(key, at: 1)
        try statement.bind(value, at: 2)
        try statement.step()
    }

    /// Rows a build from before inflight was kept in memory left inflight (state 1), read before step 3 makes them
    /// pending: the open report counts them. 0 for a store without the old `state` column.
    static func legacyInflight(_ db: SQLiteDatabase) throws(SQLiteError) -> Int64 {
        guard try db.hasTable("records"), try db.hasColumn("state", in: "records") else { return 0 }
        return try db.scalarInt("SELECT count(*) FROM records WHERE state = 1") ?? 0
    }

    static func byteTotals(_ db: SQLiteDatabase) throws(SQLiteError) -> (unsent: Int64, delivered: Int64) {
        let unsent = try db.scalarInt("SELECT sum(size) FROM records WHERE id IN (SELECT record_id FROM pending)") ?? 0
        let delivered = try db.scalarInt("SELECT sum(size) FROM records WHERE id NOT IN (SELECT record_id FROM pending)") ?? 0
        return (unsent, delivered)
    }

    /// Replaces the stored gap statements of `meters` with the book's (inside the caller's transaction).
    static func writeLossStatements(_ s: Statements, _ book: LossStatementBook, meters: Set<String>) throws(SQLiteError) {
        for meter in meters {
            let delete = s.deleteLossStatements
            defer { delete.reset() }
            try delete.bind(meter, at: 1)
            try delete.run()
            for row in book.persistentRows(meter: meter) {
                let insert = s.insertLossStatement
                defer { insert.reset() }
                try insert.bind(meter, at: 1)
                try insert.bind(Int64(row.loss.seqs.lowerBound), at: 2)
                try insert.bind(Int64(row.loss.seqs.upperBound), at: 3)
                try insert.bind(row.loss.cause.rawValue, at: 4)
                if let carrier = row.carrier { try insert.bind(Int64(carrier), at: 5) } else { try insert.bindNull(at: 5) }
                try insert.step()
            }
        }
    }

    static func loadLossStatements(_ db: SQLiteDatabase) throws(OutboxError) -> LossStatementBook {
        var book = LossStatementBook()
        var unreadable: String?
        do throws(SQLiteError) {
            let select = try db.prepare("SELECT meter, from_seq, to_seq, cause, carried_by FROM loss_statements ORDER BY meter, from_seq", persistent: false)
            while try select.step() {
                guard let meter = select.text(0), let cause = select.text(3).flatMap(StoreLoss.Cause.init(rawValue:)),
                      select.int64(1) >= 1, select.int64(2) >= select.int64(1) else {
                    unreadable = "meter \(select.text(0) ?? "NULL") seqs \(select.int64(1))…\(select.int64(2)) cause \(select.text(3) ?? "NULL")"
                    break
                }
                book.restore(StoreLoss(seqs: UInt64(select.int64(1))...UInt64(select.int64(2)), cause: cause), meter: meter,
                             carrier: select.isNull(4) ? nil : UInt64(select.int64(4)))
            }
        } catch {
            throw .from(error)
        }
        if let unreadable { throw .unreadableRow(table: "loss_statements", detail: unreadable) }
        return book
    }

    static func loadHeads(_ db: SQLiteDatabase) throws(SQLiteError) -> [String: StreamHead] {
        let statement = try db.prepare("SELECT meter, last_seq, last_hash, last_kid FROM streams", persistent: false)
        var heads: [String: StreamHead] = [:]
        while try statement.step() {
            heads[statement.text(0) ?? ""] = StreamHead(lastSeq: UInt64(statement.int64(1)), lastHash: statement.blob(2),
                                                       lastKeyID: statement.isNull(3) ? nil : statement.text(3))
        }
        return heads
    }

}
