import SQLite
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct SQLiteDatabaseTests {
    @Test func opensAFileInWALModeAndRoundTripsRows() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let db = try SQLiteDatabase(path: dir.file("t.sqlite"))
        #expect(try db.scalarText("PRAGMA journal_mode=WAL") == "wal")
        try db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB)")
        let insert = try db.prepare("INSERT INTO t(name, data) VALUES(?, ?)")
        for i in 0..<3 {
            try insert.bind("row \(i)", at: 1)
            try insert.bind([UInt8(i), 0xFF], at: 2)
            try insert.step()
            insert.reset()
        }
        #expect(try db.scalarInt("SELECT count(*) FROM t") == 3)
        let select = try db.prepare("SELECT name, data FROM t WHERE id = ?")
        try select.bind(2, at: 1)
        #expect(try select.step())
        #expect(select.text(0) == "row 1")
        #expect(select.blob(1) == [1, 0xFF])
        #expect(sqliteVersion.hasPrefix("3."))
    }

    @Test func errorsCarryTheCallTheCodeAndTheSQL() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let db = try SQLiteDatabase(path: dir.file("t.sqlite"))
        let error = #expect(throws: SQLiteError.self) { try db.execute("SELEKT 1") }
        #expect(error?.function == "sqlite3_exec")
        #expect(error?.primaryCode == 1)
        #expect(error?.description.contains("SELEKT") == true)
        let open = #expect(throws: SQLiteError.self) { try SQLiteDatabase(path: dir.file("missing/x.sqlite")) }
        #expect(open?.function == "sqlite3_open_v2")
    }

    @Test func aFileThatIsNotADatabaseIsReportedAsCorrupt() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.write("junk.sqlite", String(repeating: "not a database ", count: 100))
        let db = try SQLiteDatabase(path: path)
        let error = #expect(throws: SQLiteError.self) { try db.execute("SELECT * FROM sqlite_master") }
        #expect(error?.isCorrupt == true)
    }
}
