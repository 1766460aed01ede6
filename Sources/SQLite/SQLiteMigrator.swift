/// Brings a database's schema to the version this build knows, one numbered step at a time.
///
/// The version lives in the file's header (`PRAGMA user_version`), so it travels with the file and changes in
/// the same transaction as the step that needed it: a crash between steps leaves a file at the last whole
/// step, never half migrated. A file whose version is above every known step was written by a newer build;
/// it is refused rather than written with a schema this build does not know.
public struct SQLiteMigrator: Sendable {
    /// One schema step. `apply` runs inside the migrator's transaction.
    public struct Migration: Sendable {
        public let version: Int
        public let name: String
        public let apply: @Sendable (SQLiteDatabase) throws(SQLiteError) -> Void

        public init(version: Int, name: String, apply: @escaping @Sendable (SQLiteDatabase) throws(SQLiteError) -> Void) {
            self.version = version
            self.name = name
            self.apply = apply
        }
    }

    /// What a migration did: the version found and the one the file has now.
    public struct Outcome: Sendable, Hashable {
        public var from: Int
        public var to: Int
        /// The names of the steps that ran, oldest first.
        public var applied: [String]

        public init(from: Int, to: Int, applied: [String]) {
            self.from = from
            self.to = to
            self.applied = applied
        }
    }

    /// Why a database could not be migrated.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// A step failed; its transaction was rolled back and the file stays at `version - 1`.
        case stepFailed(version: Int, name: String, SQLiteError)
        /// The file's schema is newer than this build knows.
        case newerSchema(path: String, found: Int, known: Int)
        /// Reading or writing the version itself failed.
        case database(SQLiteError)

        public var description: String {
            switch self {
            case .stepFailed(let version, let name, let error):
                return "schema step \(version) (\(name)) failed and was rolled back: \(error)"
            case .newerSchema(let path, let found, let known):
                return "\(path) has schema version \(found); this build knows versions up to \(known). It was written by a newer "
                    + "MeterGate: run that version, or move the file aside"
            case .database(let error): return "reading the schema version: \(error)"
            }
        }
    }

    public let migrations: [Migration]

    /// `migrations` must be numbered 1, 2, 3, … in order: a gap or a repeat is a programming error.
    public init(_ migrations: [Migration]) {
        precondition(migrations.enumerated().allSatisfy { $0.offset + 1 == $0.element.version },
                     "schema steps must be numbered 1, 2, 3, … in order")
        self.migrations = migrations
    }

    /// The version the last step brings a file to.
    public var latestVersion: Int { migrations.last?.version ?? 0 }

    /// Runs every step above the file's version, each in its own `BEGIN IMMEDIATE` transaction.
    @discardableResult
    public func migrate(_ db: SQLiteDatabase) throws(Failure) -> Outcome {
        let found: Int
        do throws(SQLiteError) { found = try db.userVersion() } catch { throw .database(error) }
        guard found <= latestVersion else { throw .newerSchema(path: db.path, found: found, known: latestVersion) }
        var outcome = Outcome(from: found, to: found, applied: [])
        for step in migrations where step.version > found {
            do throws(SQLiteError) {
                try db.execute("BEGIN IMMEDIATE")
                try step.apply(db)
                try db.execute("PRAGMA user_version = \(step.version)")
                try db.execute("COMMIT")
            } catch {
                if !db.isAutocommit { try? db.execute("ROLLBACK") }
                throw .stepFailed(version: step.version, name: step.name, error)
            }
            outcome.to = step.version
            outcome.applied.append(step.name)
        }
        return outcome
    }
}
