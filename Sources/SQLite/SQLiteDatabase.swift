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

    /// Whether `table` exists (in `sqlite_master`).
    public func hasTable(_ table: String) throws(SQLiteError) -> Bool {
        let statement = try prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", persistent: false)
        try statement.bind(table, at: 1)
        return try statement.step()
    }

    /// Whether `table` has a column named `column` (`pragma_table_info`).
    public func hasColumn(_ column: String, in table: String) throws(SQLiteError) -> Bool {
        let statement = try prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", persistent: false)
        try statement.bind(table, at: 1)
        try statement.bind(column, at: 2)
        return try statement.step()
    }

    /// `PRAGMA user_version`: the schema version a ``SQLiteMigrator`` keeps in the file's header.
    public func userVersion() throws(SQLiteError) -> Int {
        Int(try scalarInt("PRAGMA user_version") ?? 0)
    }

    /// Adds `column` to `table` unless it is there: for files made before a versioned schema, whose tables
    /// the first schema step finds with some of the later columns missing.
    public func addColumn(_ column: String, to table: String, definition: String) throws(SQLiteError) {
        guard try !hasColumn(column, in: table) else { return }
        try execute("ALTER TABLE \(table) ADD COLUMN \(column) \(definition)")
    }
}
