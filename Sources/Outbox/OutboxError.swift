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

    public var description: String {
        switch self {
        case .storageFull(let e): return "outbox storage is full, append refused and nothing lost: \(e)"
        case .recordBuilderFailed(let meter, let seq, let underlying):
            return "building the record for meter \(meter) seq \(seq) failed: \(underlying); nothing of the batch was stored"
        case .invalidHash(let meter, let seq, let count):
            return "the record for meter \(meter) seq \(seq) came with a \(count)-byte hash; a 32-byte SHA-256 is required"
        case .database(let e): return "outbox database error: \(e)"
        case .closed: return "the outbox is closed"
        }
    }

    /// Wraps a SQLite error, telling a full disk apart.
    static func from(_ error: SQLiteError) -> OutboxError { error.isFull ? .storageFull(error) : .database(error) }
}
