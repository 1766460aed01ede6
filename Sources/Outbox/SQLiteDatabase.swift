internal import CSQLite

/// One SQLite connection: a thin, typed wrapper over libsqlite3.
///
/// Not thread-safe by design: the owner (an actor on its own serial queue) is the only one who calls it,
/// as GRDB's `SerializedDatabase` does. The connection is opened with `SQLITE_OPEN_NOMUTEX` for that reason.
public final class SQLiteDatabase {
    private let handle: OpaquePointer
    /// The file this connection opened.
    public let path: String

    /// Opens (creating if asked) the database at `path`. The corresponding C function is `sqlite3_open_v2`.
    public init(path: String, create: Bool = true, readOnly: Bool = false) throws(SQLiteError) {
        var db: OpaquePointer?
        var flags = readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE
        if create && !readOnly { flags |= SQLITE_OPEN_CREATE }
        flags |= SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            let code = db.map { sqlite3_extended_errcode($0) } ?? rc
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(function: "sqlite3_open_v2", code: code, message: message, context: path)
        }
        sqlite3_extended_result_codes(db, 1)
        self.handle = db
        self.path = path
    }

    deinit { sqlite3_close_v2(handle) }

    /// Runs one or more statements that return no rows. The corresponding C function is `sqlite3_exec`.
    public func execute(_ sql: String) throws(SQLiteError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(errorMessage)
            throw SQLiteError(function: "sqlite3_exec", code: sqlite3_extended_errcode(handle), message: message, context: sql)
        }
    }

    /// Compiles `sql` into a reusable statement. The corresponding C function is `sqlite3_prepare_v3`.
    public func prepare(_ sql: String, persistent: Bool = true) throws(SQLiteError) -> SQLiteStatement {
        var statement: OpaquePointer?
        let flags = persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0
        let rc = sqlite3_prepare_v3(handle, sql, -1, flags, &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error("sqlite3_prepare_v3", context: sql) }
        return SQLiteStatement(handle: statement, database: self, sql: sql)
    }

    /// The rowid of the last inserted row. The corresponding C function is `sqlite3_last_insert_rowid`.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Rows changed by the last statement. The corresponding C function is `sqlite3_changes64`.
    public var changes: Int64 { sqlite3_changes64(handle) }

    /// Whether no transaction is open (SQLite rolls a transaction back by itself after some errors, such
    /// as `SQLITE_FULL`). The corresponding C function is `sqlite3_get_autocommit`.
    public var isAutocommit: Bool { sqlite3_get_autocommit(handle) != 0 }

    /// Builds the error for a failed call on this connection; call right after the failure.
    func error(_ function: String, context: String = "") -> SQLiteError {
        SQLiteError(function: function, code: sqlite3_extended_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), context: context)
    }

    /// Runs `sql` and returns the first column of the first row as text (e.g. `PRAGMA journal_mode`).
    public func scalarText(_ sql: String) throws(SQLiteError) -> String? {
        let statement = try prepare(sql, persistent: false)
        guard try statement.step() else { return nil }
        return statement.text(0)
    }

    /// Runs `sql` and returns the first column of the first row as an integer.
    public func scalarInt(_ sql: String) throws(SQLiteError) -> Int64? {
        let statement = try prepare(sql, persistent: false)
        guard try statement.step() else { return nil }
        return statement.isNull(0) ? nil : statement.int64(0)
    }
}

/// A prepared statement. Bind, step, read columns, reset.
public final class SQLiteStatement {
    private let handle: OpaquePointer
    private let database: SQLiteDatabase
    public let sql: String

    init(handle: OpaquePointer, database: SQLiteDatabase, sql: String) {
        self.handle = handle
        self.database = database
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    /// Binds an integer to the 1-based parameter `index`. The corresponding C function is `sqlite3_bind_int64`.
    public func bind(_ value: Int64, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_int64(handle, index, value), "sqlite3_bind_int64")
    }

    /// Binds text. The corresponding C function is `sqlite3_bind_text`.
    public func bind(_ value: String, at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_text(handle, index, value, -1, CSQLite_transient()), "sqlite3_bind_text")
    }

    /// Binds a blob. The corresponding C function is `sqlite3_bind_blob`.
    public func bind(_ value: [UInt8], at index: Int32) throws(SQLiteError) {
        let rc = value.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), CSQLite_transient()) }
        try check(rc, "sqlite3_bind_blob")
    }

    /// Binds NULL. The corresponding C function is `sqlite3_bind_null`.
    public func bindNull(at index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_null(handle, index), "sqlite3_bind_null")
    }

    /// Advances to the next row; false when done. The corresponding C function is `sqlite3_step`.
    @discardableResult
    public func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw database.error("sqlite3_step", context: sql)
        }
    }

    /// Resets the statement and clears its bindings. The corresponding C functions are `sqlite3_reset` and `sqlite3_clear_bindings`.
    public func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    public func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    public func text(_ column: Int32) -> String? {
        guard let p = sqlite3_column_text(handle, column) else { return nil }
        return String(cString: p)
    }

    public func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let p = sqlite3_column_blob(handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }

    private func check(_ rc: Int32, _ function: String) throws(SQLiteError) {
        if rc != SQLITE_OK { throw database.error(function, context: sql) }
    }
}
