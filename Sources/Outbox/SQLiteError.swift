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

    public var description: String {
        let name = String(cString: sqlite3_errstr(code))
        let suffix = context.isEmpty ? "" : " [\(context)]"
        return "\(function) failed: \(message) (\(name), code \(code))\(suffix)"
    }
}

/// The version of the SQLite library in use. The corresponding C function is `sqlite3_libversion`.
public var sqliteVersion: String { String(cString: sqlite3_libversion()) }
