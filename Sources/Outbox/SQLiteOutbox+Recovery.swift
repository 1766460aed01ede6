import Crypto
import Foundation
import Logging
import MeterCore
import SQLite

extension SQLiteOutbox {
    enum OpenFailure: Error {
        case damaged(String)
        case failed(OutboxError)
    }

    /// Opens the file and runs the integrity check; corruption is `.damaged`, anything else `.failed`.
    static func openVerified(path: String, check: IntegrityCheck, create: Bool) throws(OpenFailure) -> SQLiteDatabase {
        let db: SQLiteDatabase
        var problems: [String] = []
        do throws(SQLiteError) {
            db = try SQLiteDatabase(path: path, create: create)
            switch check {
            case .quick, .full:
                let statement = try db.prepare(check == .quick ? "PRAGMA quick_check" : "PRAGMA integrity_check", persistent: false)
                while try statement.step(), problems.count < 5 {
                    if let line = statement.text(0), line != "ok" { problems.append(line) }
                }
            case .none:
                _ = try db.scalarInt("SELECT count(*) FROM sqlite_master")
            }
        } catch {
            if error.isCorrupt { throw .damaged(error.description) }
            throw .failed(.database(error))
        }
        if !problems.isEmpty { throw .damaged(problems.joined(separator: "; ")) }
        if check != .none {
            var damage: String?
            do throws(SQLiteError) {
                damage = try contentDamage(db)
            } catch {
                if error.isCorrupt { throw .damaged(error.description) }
                throw .failed(.database(error))
            }
            if let damage { throw .damaged(damage) }
        }
        return db
    }

    /// SHA-256 over a record's hash and bytes, stored with it, so that a changed value in either is found.
    static func digest(hash: [UInt8], bytes: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: hash)
        hasher.update(data: bytes)
        return Array(hasher.finalize())
    }

    /// What the structural check cannot see: a stored value that changed (a flipped bit on a bad SD card).
    /// Every record must still match the digest stored with it, and each stream's head (the hash the next
    /// record chains onto) must be its last record's hash; otherwise the next record would be signed onto a
    /// bad link, or a changed record published or replayed.
    static func contentDamage(_ db: SQLiteDatabase) throws(SQLiteError) -> String? {
        guard try db.hasTable("streams"), try db.hasTable("records") else {
            return nil   // a new store
        }
        let heads = try db.prepare("""
            SELECT s.meter, s.last_seq, s.last_hash, r.hash FROM streams s
            LEFT JOIN records r ON r.meter = s.meter AND r.seq = s.last_seq
            """, persistent: false)
        while try heads.step() {
            guard !heads.isNull(3) else { continue }   // the head record was pruned after delivery
            if heads.blob(2) != heads.blob(3) {
                return "stream \(heads.text(0) ?? "?"): the chain head does not match record seq \(heads.int64(1))"
            }
        }
        guard try db.hasColumn("digest", in: "records") else { return nil }
        let rows = try db.prepare("SELECT meter, seq, hash, bytes, digest FROM records WHERE digest IS NOT NULL", persistent: false)
        while try rows.step() {
            if digest(hash: rows.blob(2), bytes: rows.blob(3)) != rows.blob(4) {
                return "stream \(rows.text(0) ?? "?"): record seq \(rows.int64(1)) no longer matches the digest stored with it"
            }
        }
        return nil
    }

    /// Renames the file (and its WAL and shared-memory files) to `<path>.damaged-<UTC time>`.
    static func moveAside(path: String, clock: () -> Date) throws(OutboxError) -> String {
        var target = "\(path).damaged-\(utcText(clock(), compact: true))"
        var n = 1
        while FileManager.default.fileExists(atPath: target) {
            n += 1
            target = "\(path).damaged-\(utcText(clock(), compact: true))-\(n)"
        }
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            if rename(path + suffix, target + suffix) != 0 {
                let code = errno
                throw .fileCall(path: path + suffix, call: "rename", code: code,
                                doing: "moving the damaged \(path + suffix) aside to \(target + suffix)")
            }
        }
        return target
    }


    /// Reads the high-water mark and continues every stream whose database head is behind it from the mark
    /// (`heads` changes in memory only: the `streams` row follows with the stream's next append, so a restart
    /// before then finds and reports the same loss again). A mark of another epoch is replaced by an empty
    /// one for this epoch: the old seqs belong to the old chain. A store made by this open (a new epoch)
    /// removes any mark left by an earlier store unread, damaged or not: no seq of a new epoch has left yet.
    static func applyMark(databasePath: String, epoch: String, created: Bool, heads: inout [String: StreamHead],
                                  logger: Logger) throws(OutboxError) -> (HighWaterMark, [OutboxRecovery]) {
        if created {
            for slot in HighWaterMark.paths(forDatabase: databasePath) where FileManager.default.fileExists(atPath: slot) {
                guard unlink(slot) == 0 else { throw .markFileUnreadable(path: slot, call: "unlink", code: errno) }
                logger.notice("removed the high-water mark of an earlier store; the new store starts a new epoch", metadata: ["path": "\(slot)"])
            }
            return (HighWaterMark(epoch: epoch, streams: [:]), [])
        }
        guard let found = try HighWaterMark.load(databasePath: databasePath, logger: logger) else {
            return (HighWaterMark(epoch: epoch, streams: [:]), [])
        }
        guard found.epoch == epoch else {
            logger.notice("the outbox high-water mark belongs to another store epoch; starting a new mark",
                          metadata: ["path": "\(databasePath).mark-*", "mark_epoch": "\(found.epoch)", "epoch": "\(epoch)"])
            return (HighWaterMark(epoch: epoch, streams: [:], generation: found.generation), [])
        }
        var recoveries: [OutboxRecovery] = []
        for (meter, entry) in found.streams.sorted(by: { $0.key < $1.key }) {
            let stored = heads[meter]?.lastSeq ?? 0
            guard stored < entry.seq else { continue }
            let recovery = OutboxRecovery(meter: meter, storedSeq: stored, markSeq: entry.seq, intervalEnd: entry.intervalEnd)
            recoveries.append(recovery)
            heads[meter] = StreamHead(lastSeq: entry.seq, lastHash: entry.hash, lastKeyID: heads[meter]?.lastKeyID)
            logger.error("""
                the outbox database lost committed records that had already been published (a damaged or cut WAL, or a power \
                cut); continuing the stream from its high-water mark so that no seq is used twice
                """,
                         metadata: ["meter": "\(meter)", "db_last_seq": "\(stored)", "mark_seq": "\(entry.seq)",
                                    "lost_seqs": "\(recovery.lostSeqs)", "mark_interval_end_ms": "\(entry.intervalEnd.map { "\($0)" } ?? "-")",
                                    "mark_generation": "\(found.generation)"])
        }
        return (found, recoveries)
    }

}
