internal import CSQLite

/// A failed SQLite call: the C function, the extended result code and SQLite's message.
public struct SQLiteError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The SQLite function that failed, e.g. `sqlite3_step`.
    public let function: String
    /// The extended result code (`sqlite3_extended_errcode`).
    public let code: Int32
    /// `sqlite3_errmsg` at the time of failure.
    public let message: String
    /// The SQL being run, or the file being opened.
    public let context: String

    public init(function: String, code: Int32, message: String, context: String = "") {
        self.function = function
        self.code = code
        self.message = message
        self.context = context
    }

    /// The primary result code (the low byte of the extended code).
    public var primaryCode: Int32 { code & 0xFF }
    /// The disk or the database's page limit is full (`SQLITE_FULL`).
    public var isFull: Bool { primaryCode == SQLITE_FULL }
    /// The file is not a database or is damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`).
    public var isCorrupt: Bool { primaryCode == SQLITE_CORRUPT || primaryCode == SQLITE_NOTADB }
    /// Another connection holds a lock (`SQLITE_BUSY`, `SQLITE_LOCKED`).
    public var isBusy: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }

    /// The primary result code's C name, as in SQLite's documentation and `sqlite3.h`: `SQLITE_FULL`.
    public var codeName: String {
        switch primaryCode {
        case SQLITE_ERROR: return "SQLITE_ERROR"
        case SQLITE_PERM: return "SQLITE_PERM"
        case SQLITE_BUSY: return "SQLITE_BUSY"
        case SQLITE_LOCKED: return "SQLITE_LOCKED"
        case SQLITE_NOMEM: return "SQLITE_NOMEM"
        case SQLITE_READONLY: return "SQLITE_READONLY"
        case SQLITE_IOERR: return "SQLITE_IOERR"
        case SQLITE_CORRUPT: return "SQLITE_CORRUPT"
        case SQLITE_FULL: return "SQLITE_FULL"
        case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN"
        case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT"
        case SQLITE_MISMATCH: return "SQLITE_MISMATCH"
        case SQLITE_NOTADB: return "SQLITE_NOTADB"
        default: return "SQLite code \(primaryCode)"
        }
    }

    public var description: String {
        let name = String(cString: sqlite3_errstr(code))
        let suffix = context.isEmpty ? "" : " [\(context)]"
        return "\(function) failed: \(message) (\(codeName): \(name), code \(code))\(suffix)"
    }
}

/// The version of the SQLite library in use. The corresponding C function is `sqlite3_libversion`.
public var sqliteVersion: String { String(cString: sqlite3_libversion()) }
