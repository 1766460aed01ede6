import Foundation
import SQLite

/// Why an outbox operation failed. Nothing is half-written in any case: the transaction rolled back.
public enum OutboxError: Error, CustomStringConvertible {
    /// The disk, or the database's page limit, is full (`SQLITE_FULL`): the append was refused and rolled
    /// back. Appends work again once space is freed (delivered records pruned, disk cleaned).
    case storageFull(SQLiteError)
    /// The record builder (the signing code) threw for this position; nothing of the batch was stored.
    case recordBuilderFailed(meter: String, seq: UInt64, underlying: any Error)
    /// The builder returned a hash that is not 32 bytes (it becomes the next record's `prev`).
    case invalidHash(meter: String, seq: UInt64, count: Int)
    /// Any other SQLite failure.
    case database(SQLiteError)
    /// The store was closed.
    case closed
    /// The high-water mark file (the highest seq of each stream that was handed out for publishing, kept
    /// beside the database) could not be read or written: `call` failed with `errno` `code`. A failed write
    /// hands no records out.
    case markFileUnreadable(path: String, call: String, code: Int32)
    /// The high-water mark file is damaged. The outbox refuses to open: without the mark it cannot tell
    /// whether the database lost records that were already published, and continuing from a rolled-back
    /// head would sign new records under published seqs (a fork at the settlement side).
    case markFileDamaged(path: String, reason: String)
    /// Opened for inspection, the database failed its integrity check (a gateway moves such a file aside).
    case damaged(path: String, reason: String)
    /// SQLite kept another journal mode than WAL (a file system without shared memory, a read-only directory).
    case journalModeRefused(path: String, mode: String)
    /// The schema could not be brought to this build's version, or is newer than it.
    case schema(SQLiteMigrator.Failure)
    /// A file call on the database's files failed (`call`, `errno` `code`), e.g. moving a damaged file aside.
    case fileCall(path: String, call: String, code: Int32, doing: String)
    /// A stored row cannot be what this build wrote (a value out of range); nothing was changed.
    case unreadableRow(table: String, detail: String)

    public var description: String {
        switch self {
        case .storageFull(let e): return "outbox storage is full, append refused and nothing lost: \(e)"
        case .recordBuilderFailed(let meter, let seq, let underlying):
            return "building the record for meter \(meter) seq \(seq) failed: \(underlying); nothing of the batch was stored"
        case .invalidHash(let meter, let seq, let count):
            return "the record for meter \(meter) seq \(seq) came with a \(count)-byte hash; a 32-byte SHA-256 is required"
        case .database(let e): return "outbox database error: \(e)"
        case .closed: return "the outbox is closed"
        case .markFileUnreadable(let path, let call, let code):
            return "the outbox high-water mark \(path): \(call) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .damaged(let path, let reason):
            return "the outbox \(path) is damaged: \(reason). The gateway moves such a file aside when it starts"
        case .journalModeRefused(let path, let mode):
            return "the outbox \(path) could not use the WAL journal (SQLite kept \(mode)); its directory must be writable "
                + "and on a local file system"
        case .schema(let failure): return "outbox schema: \(failure)"
        case .fileCall(let path, let call, let code, let doing):
            return "\(doing): \(call)(\(path)) failed: \(String(cString: strerror(code))) (errno \(code))"
        case .unreadableRow(let table, let detail): return "the outbox table \(table) holds an unreadable row: \(detail)"
        case .markFileDamaged(let path, let reason):
            return "the outbox high-water mark \(path) is damaged: \(reason). MeterGate cannot tell whether the outbox lost "
                + "records it had already published, so it does not open it. If the outbox database is known to be intact "
                + "(`metergate outbox stats` shows every stream's last seq), remove \(path) and start again; otherwise move the "
                + "outbox database aside so that a new store (a new epoch) is made"
        }
    }

    /// Wraps a SQLite error, telling a full disk apart.
    static func from(_ error: SQLiteError) -> OutboxError { error.isFull ? .storageFull(error) : .database(error) }
}
