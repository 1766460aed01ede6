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
    ])

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

    /// The tables as step 1 makes them (step 2 keys the records again).
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

    /// The prepared statements, made once.
    final class Statements {
        let database: SQLiteDatabase
        let begin, commit, syncNormal, syncFull: SQLiteStatement
        let insert, upsertStream: SQLiteStatement
        let saveState, selectState: SQLiteStatement
        let selectPendingAbove, selectPendingByID, markDelivered, selectRange: SQLiteStatement
        let expireDelivered, scanDelivered, pruneDeliveredUpTo, scanPending, dropPending: SQLiteStatement
        let deleteLossStatements, insertLossStatement, selectUnsentSeq: SQLiteStatement

        init(_ db: SQLiteDatabase) throws(SQLiteError) {
            database = db
            begin = try db.prepare("BEGIN IMMEDIATE")
            commit = try db.prepare("COMMIT")
            syncNormal = try db.prepare("PRAGMA synchronous=NORMAL")
            syncFull = try db.prepare("PRAGMA synchronous=FULL")
            saveState = try db.prepare("INSERT INTO saved_state(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            selectState = try db.prepare("SELECT value FROM saved_state WHERE key = ?1")
            insert = try db.prepare("""
                INSERT INTO records(meter, seq, state, appended_at, size, hash, bytes, digest, interval_end)
                VALUES(?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8)
                """)
            upsertStream = try db.prepare("""
                INSERT INTO streams(meter, last_seq, last_hash, last_kid) VALUES(?1, ?2, ?3, ?4)
                ON CONFLICT(meter) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash, last_kid = excluded.last_kid
                """)
            selectPendingAbove = try db.prepare("""
                SELECT id, meter, seq, appended_at, hash, bytes, interval_end FROM records WHERE state = 0 AND id > ?1 ORDER BY id LIMIT ?2
                """)
            selectPendingByID = try db.prepare("SELECT id, meter, seq, appended_at, hash, bytes, interval_end FROM records WHERE id = ?1 AND state = 0")
            markDelivered = try db.prepare("UPDATE records SET state = 2, delivered_at = ?1 WHERE id = ?2 AND state = 0 RETURNING size")
            selectRange = try db.prepare("""
                SELECT id, seq, state, appended_at, hash, bytes FROM records
                WHERE meter = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq LIMIT ?4
                """)
            expireDelivered = try db.prepare("DELETE FROM records WHERE state = 2 AND delivered_at < ?1 RETURNING size")
            scanDelivered = try db.prepare("SELECT id, size FROM records WHERE state = 2 ORDER BY id")
            pruneDeliveredUpTo = try db.prepare("DELETE FROM records WHERE state = 2 AND id <= ?1 RETURNING size")
            scanPending = try db.prepare("SELECT id, meter, seq, size FROM records WHERE state = 0 ORDER BY id")
            dropPending = try db.prepare("DELETE FROM records WHERE id = ?1 AND state = 0 RETURNING size")
            deleteLossStatements = try db.prepare("DELETE FROM loss_statements WHERE meter = ?1")
            insertLossStatement = try db.prepare("INSERT INTO loss_statements(meter, from_seq, to_seq, cause, carried_by) VALUES(?1, ?2, ?3, ?4, ?5)")
            selectUnsentSeq = try db.prepare("SELECT 1 FROM records WHERE meter = ?1 AND seq = ?2 AND state <> 2")
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

    static func resetInflight(_ db: SQLiteDatabase) throws(SQLiteError) -> Int64 {
        try db.execute("UPDATE records SET state = 0 WHERE state = 1")
        return db.changes
    }

    static func byteTotals(_ db: SQLiteDatabase) throws(SQLiteError) -> (unsent: Int64, delivered: Int64) {
        let unsent = try db.scalarInt("SELECT sum(size) FROM records WHERE state IN (0, 1)") ?? 0
        let delivered = try db.scalarInt("SELECT sum(size) FROM records WHERE state = 2") ?? 0
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
