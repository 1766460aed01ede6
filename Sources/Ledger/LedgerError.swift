import Signing
import SQLite

/// Why the ledger could not do what was asked.
public enum LedgerError: Error, Sendable, CustomStringConvertible {
    case database(SQLiteError)
    /// The ledger's schema could not be brought to this build's version, or is newer than it.
    case schema(SQLiteMigrator.Failure)
    /// Opened for reading, but the file holds no ledger (e.g. an outbox database given by mistake).
    case notALedger(path: String)
    /// A PostgreSQL call failed: what was asked, and the server's or the connection's own words.
    case postgres(operation: String, detail: String)
    /// The database's ledger schema is newer than this build knows: written by a newer MeterGate.
    case newerSchema(location: String, found: Int, known: Int)
    /// Energy times price does not fit in 64 bits (a corrupt reading or a wrong tariff).
    case amountOverflow(stream: StreamKey, seq: UInt64, milliwattHours: Int64, price: Price)

    public var description: String {
        switch self {
        case .database(let error): return "ledger database: \(error)"
        case .schema(let failure): return "ledger schema: \(failure)"
        case .notALedger(let path): return "\(path) is an SQLite database but holds no ledger (no readings table); nothing was changed"
        case .postgres(let operation, let detail): return "ledger database: \(operation): \(detail)"
        case .newerSchema(let location, let found, let known):
            return "\(location) has ledger schema version \(found); this build knows versions up to \(known). It was written by a "
                + "newer MeterGate: run that version, or use another database"
        case .amountOverflow(let stream, let seq, let mwh, let price):
            return "\(stream) seq \(seq): \(mwh) mWh at \(price) per kWh overflows 64-bit money; check the reading and the tariff"
        }
    }
}
