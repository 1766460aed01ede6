import SQLite
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct SQLiteMigratorTests {
    static let steps = SQLiteMigrator([
        .init(version: 1, name: "readings") { db throws(SQLiteError) in
            try db.execute("CREATE TABLE readings(id INTEGER PRIMARY KEY, kwh INTEGER NOT NULL)")
        },
        .init(version: 2, name: "readings.meter") { db throws(SQLiteError) in
            try db.addColumn("meter", to: "readings", definition: "TEXT")
        },
    ])

    @Test func aNewFileRunsEveryStepAndRecordsItsVersion() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let db = try SQLiteDatabase(path: dir.file("m.sqlite"))
        let outcome = try Self.steps.migrate(db)
        #expect(outcome == SQLiteMigrator.Outcome(from: 0, to: 2, applied: ["readings", "readings.meter"]))
        #expect(try db.userVersion() == 2)
        #expect(try db.hasColumn("meter", in: "readings"))
        // Opened again: nothing left to do.
        #expect(try Self.steps.migrate(db) == SQLiteMigrator.Outcome(from: 2, to: 2, applied: []))
    }

    @Test func aFileAtAnEarlierVersionRunsOnlyTheLaterSteps() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let db = try SQLiteDatabase(path: dir.file("m.sqlite"))
        try SQLiteMigrator(Array(Self.steps.migrations.prefix(1))).migrate(db)
        try db.execute("INSERT INTO readings(kwh) VALUES (7)")
        #expect(try Self.steps.migrate(db).applied == ["readings.meter"])
        #expect(try db.scalarInt("SELECT kwh FROM readings WHERE meter IS NULL") == 7)
    }

    @Test func aFailedStepRollsBackAndNamesItself() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let db = try SQLiteDatabase(path: dir.file("m.sqlite"))
        let broken = SQLiteMigrator(Self.steps.migrations + [
            .init(version: 3, name: "half a step") { db throws(SQLiteError) in
                try db.execute("CREATE TABLE half(x)")
                try db.execute("INSERT INTO no_such_table VALUES (1)")
            },
        ])
        let failure = #expect(throws: SQLiteMigrator.Failure.self) { try broken.migrate(db) }
        guard case .stepFailed(let version, let name, let error)? = failure else {
            Issue.record("expected stepFailed, got \(String(describing: failure))")
            return
        }
        #expect(version == 3 && name == "half a step" && error.message.contains("no_such_table"))
        // Steps 1 and 2 committed; step 3 left nothing behind.
        #expect(try db.userVersion() == 2)
        #expect(try !db.hasTable("half"))
        #expect(db.isAutocommit)
    }

    @Test func aFileFromANewerBuildIsRefusedUntouched() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("m.sqlite")
        let db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA user_version = 9")
        let failure = #expect(throws: SQLiteMigrator.Failure.self) { try Self.steps.migrate(db) }
        guard case .newerSchema(let named, let found, let known)? = failure else {
            Issue.record("expected newerSchema, got \(String(describing: failure))")
            return
        }
        #expect(named == path && found == 9 && known == 2)
        #expect(failure?.description.contains("newer") == true)
        #expect(try !db.hasTable("readings"))
        #expect(try db.userVersion() == 9)
    }

    @Test func addingAColumnThatIsThereDoesNothing() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let db = try SQLiteDatabase(path: dir.file("m.sqlite"))
        try db.execute("CREATE TABLE t(a INTEGER)")
        try db.addColumn("b", to: "t", definition: "TEXT")
        try db.addColumn("b", to: "t", definition: "TEXT")
        #expect(try db.scalarInt("SELECT count(*) FROM pragma_table_info('t')") == 2)
    }
}
