import Dispatch
import Crypto
import Foundation
import Logging
import MeterCore
import SQLite

/// The outbox on a SQLite file: one connection, owned by this actor, on its own serial queue.
///
/// Beside the file it keeps a high-water mark (`<path>.mark-a` and `-b`, see ``HighWaterMark``): per stream, the highest
/// seq ever handed out for publishing, written durably before ``claimPending(limit:)`` returns the records.
/// A database that comes back behind its mark (committed transactions lost) is continued from the mark,
/// so no published seq is ever signed again with other bytes (``OutboxOpenReport/recoveries``).
///
/// Durability: WAL journal with `synchronous=FULL` for every transaction that adds records, so an
/// appended record is on disk before ``append(_:)`` returns (and before it can be offered to MQTT).
/// Delivered marks commit with `synchronous=NORMAL`: a power cut can only lose the latest of them, which
/// turns a record back into pending and, at worst, publishes it again, which at-least-once delivery allows.
/// Records are never lost that way; ordering of WAL frames keeps every later FULL commit durable together
/// with the NORMAL ones before it.
///
/// A record's row is written once. What a sink still owes is a row of `pending` (made with the record, in the same
/// transaction), what it delivered a row of `deliveries`; this store serves one sink (``OutboxConfiguration/sink``).
/// Inflight is a state of this process only: a claim hands records out without writing anything (every inflight
/// record is pending again after a restart anyway). On disk a claimed record stays pending; `metergate outbox
/// stats` run beside the gateway counts it there, and ``stats()`` of the gateway's own store as inflight.
public actor SQLiteOutbox: OutboxStore {
    /// How thoroughly the file is checked when opened.
    public enum IntegrityCheck: Sendable, Hashable {
        /// `PRAGMA quick_check`: every page and row format, without cross-checking indexes (O(N), fast).
        case quick
        /// `PRAGMA integrity_check`: also checks every index entry.
        case full
        /// No check (benchmarks of open time only).
        case none
    }

    public struct Options: Sendable, Hashable {
        public var integrityCheck: IntegrityCheck
        /// `PRAGMA max_page_count`: a hard page limit, for tests of the disk-full path.
        public var maxPageCount: Int64?
        /// For inspection beside a running gateway (`metergate outbox`, `metergate replay`): the file must
        /// exist, inflight records stay inflight, and a damaged file is reported, not moved.
        public var inspectOnly: Bool
        /// `PRAGMA cache_size` in KiB: the most the connection's page cache holds. SQLite's default is 2,000 KiB,
        /// which a gateway's outbox (appends at the end, reads of recent records) fills without needing it.
        public var cacheKiB: Int

        public init(integrityCheck: IntegrityCheck = .quick, maxPageCount: Int64? = nil, inspectOnly: Bool = false, cacheKiB: Int = 512) {
            self.integrityCheck = integrityCheck
            self.maxPageCount = maxPageCount
            self.inspectOnly = inspectOnly
            self.cacheKiB = cacheKiB
        }
    }

    let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let epoch: String
    public nonisolated let path: String
    public nonisolated let openReport: OutboxOpenReport

    let configuration: OutboxConfiguration
    let logger: Logger
    let clock: @Sendable () -> Date
    var database: SQLiteDatabase?
    var statements: Statements?
    /// Last seq and hash per meter, mirroring the `streams` table; changed only after a commit.
    var heads: [String: StreamHead]
    var unsentBytes: Int64
    var deliveredBytes: Int64
    var droppedTotal: Int64
    var quotaAlarm = false
    /// What the high-water mark holds now (nil: inspection only, never written).
    var mark: HighWaterMark?
    /// The mark's streams as text, kept in step with ``mark`` (a claim writes again only the streams it raised).
    var markText = HighWaterMark.Text()
    /// Inflight records (handed out by a claim, neither delivered nor released): id → meter. Their rows stay pending.
    var claimed: [Int64: String] = [:]
    /// Every pending row with an id up to this one is in ``claimed`` or ``released``; a claim continues above it.
    var claimCursor: Int64 = 0
    /// Pending rows at or below ``claimCursor`` to hand out again first, oldest first: released claims, and any
    /// row appended with an id at or below the cursor (SQLite reuses the highest ids after deletes).
    var released: Set<Int64> = []
    /// Signed gap statements (``StreamPosition/storeLost``): streams continued from the mark whose next record has
    /// yet to say so, quota drops, and the statements carried by records not yet delivered. Mirrors the
    /// `loss_statements` table (but for waiting damage statements, found again from the mark at each start).
    var book = LossStatementBook()

    /// Opens (or creates) the outbox at `path` without blocking the caller's thread: the work runs on a
    /// dispatch queue, never on Swift's cooperative pool.
    public static func open(path: String, configuration: OutboxConfiguration, options: Options = Options(),
                            logger: Logger = Logger(label: "metergate.outbox"),
                            clock: @escaping @Sendable () -> Date = { Date() }) async throws(OutboxError) -> SQLiteOutbox {
        let result: Result<SQLiteOutbox, OutboxError> = await withCheckedContinuation { continuation in
            DispatchQueue(label: "metergate.outbox.open").async {
                do throws(OutboxError) {
                    continuation.resume(returning: .success(try SQLiteOutbox(path: path, configuration: configuration, options: options, logger: logger, clock: clock)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Opens (or creates) the outbox at `path`. Blocks for the integrity check: call ``open(path:configuration:options:logger:clock:)``
    /// from async code.
    ///
    /// A file that fails the integrity check (or is not a database) is moved aside, reported in
    /// ``openReport`` and logged as an error, and a new store is created in its place.
    public init(path: String, configuration: OutboxConfiguration, options: Options = Options(),
                logger: Logger = Logger(label: "metergate.outbox"), clock: @escaping @Sendable () -> Date = { Date() }) throws(OutboxError) {
        self.executor = SerialQueueExecutor(label: "metergate.outbox")
        self.path = path
        self.configuration = configuration
        self.logger = logger
        self.clock = clock

        var quarantined: QuarantinedDatabase?
        var db: SQLiteDatabase
        var heads: [String: StreamHead] = [:]
        var report: OutboxOpenReport
        do throws(OpenFailure) {
            db = try Self.openVerified(path: path, check: options.integrityCheck, create: !options.inspectOnly)
        } catch {
            switch error {
            case .failed(let failure):
                throw failure
            case .damaged(let reason) where options.inspectOnly:
                throw .damaged(path: path, reason: reason)
            case .damaged(let reason):
                let movedTo = try Self.moveAside(path: path, clock: clock)
                quarantined = QuarantinedDatabase(movedTo: movedTo, reason: reason)
                logger.error("outbox database failed its integrity check and was moved aside; starting a new store (new epoch)",
                             metadata: ["path": "\(path)", "moved_to": "\(movedTo)", "reason": "\(reason)"])
                do throws(SQLiteError) { db = try SQLiteDatabase(path: path) } catch { throw .database(error) }
            }
        }

        let journal: String?
        do throws(SQLiteError) { journal = try db.scalarText("PRAGMA journal_mode=WAL") } catch { throw OutboxError.from(error) }
        guard journal == "wal" else { throw .journalModeRefused(path: path, mode: journal ?? "none") }
        do throws(SQLiteError) {
            try db.execute("PRAGMA synchronous=FULL")
            try db.execute("PRAGMA cache_size=-\(max(options.cacheKiB, 64))")
            // A commit of every meter's records (100 meters: about 150 pages: records, the record keys,
            // saved states) dirties more pages than the capped cache holds; SQLite then wrote dirty pages to the WAL
            // mid-transaction and again at the commit (0.6 page writes a record). Dirty pages stay in memory up to
            // 1024 pages (4 MiB) of one transaction; past that (a large prune) they spill as before.
            try db.execute("PRAGMA cache_spill=\(Self.cacheSpillPages)")
            if let pages = options.maxPageCount { _ = try db.scalarInt("PRAGMA max_page_count=\(pages)") }
        } catch {
            throw OutboxError.from(error)
        }
        let reset: Int64
        do throws(SQLiteError) { reset = options.inspectOnly ? 0 : try Self.legacyInflight(db) } catch { throw OutboxError.from(error) }
        do throws(SQLiteMigrator.Failure) { try Self.migrator.migrate(db) } catch { throw .schema(error) }
        do throws(SQLiteError) {
            try db.execute("BEGIN IMMEDIATE")
            var created = false
            var epoch = try Self.meta(db, "epoch")
            if epoch == nil {
                let fresh = Self.randomEpoch()
                try Self.setMeta(db, "epoch", fresh)
                try Self.setMeta(db, "created_at", Self.utcText(clock()))
                epoch = fresh
                created = true
            }
            try db.execute("COMMIT")
            self.epoch = epoch!
            self.droppedTotal = Int64(try Self.meta(db, "dropped_total") ?? "0") ?? 0
            (self.unsentBytes, self.deliveredBytes) = try Self.byteTotals(db)
            heads = try Self.loadHeads(db)
            self.statements = try Statements(db, sink: configuration.sink)
            report = OutboxOpenReport(created: created, quarantined: quarantined, inflightReset: reset)
        } catch {
            throw OutboxError.from(error)
        }
        book = try Self.loadLossStatements(db)
        if !options.inspectOnly {
            // A damaged mark throws (OutboxError.markFileDamaged): the gateway then refuses to start, naming the
            // file and what to do. Guessing would risk signing published seqs again.
            let (mark, recoveries) = try Self.applyMark(databasePath: path, epoch: self.epoch, created: report.created, heads: &heads, logger: logger)
            self.mark = mark
            markText.update(mark.streams)
            report.recoveries = recoveries
            for recovery in recoveries { book.add(StoreLoss(seqs: recovery.lostSeqs, cause: .damage), meter: recovery.meter) }
        }
        self.heads = heads
        self.openReport = report
        self.database = db
        if openReport.inflightReset > 0 {
            logger.info("inflight records returned to pending after a restart", metadata: ["count": "\(openReport.inflightReset)"])
        }
    }

    // MARK: - Housekeeping

    /// Copies the store into a compact file and swaps it in (`VACUUM`), then truncates the WAL.
    public func vacuum() throws(OutboxError) {
        let s = try open()
        try sql { () throws(SQLiteError) in
            try s.database.execute("VACUUM")
            _ = try s.database.scalarInt("PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    /// The connection's journal mode and `synchronous` level (2 = FULL), as SQLite reports them now.
    public func durability() throws(OutboxError) -> (journalMode: String, synchronous: Int64) {
        let s = try open()
        return try sql { () throws(SQLiteError) in
            (try s.database.scalarText("PRAGMA journal_mode") ?? "", try s.database.scalarInt("PRAGMA synchronous") ?? -1)
        }
    }

    /// Changes the page limit (`PRAGMA max_page_count`); tests use it to end a forced disk-full state.
    public func setMaxPageCount(_ pages: Int64) throws(OutboxError) {
        let s = try open()
        _ = try sql { () throws(SQLiteError) in try s.database.scalarInt("PRAGMA max_page_count=\(pages)") }
    }

    /// Checkpoints the WAL into the main file and closes the connection. Later calls throw ``OutboxError/closed``.
    public func close() {
        if let database {
            _ = try? database.scalarInt("PRAGMA wal_checkpoint(TRUNCATE)")
        }
        statements = nil
        database = nil
    }

    // MARK: - Private

    func open() throws(OutboxError) -> Statements {
        guard let statements else { throw .closed }
        return statements
    }

    /// Runs `body`; on failure rolls back an open transaction and maps the error.
    func sql<T>(_ body: () throws(SQLiteError) -> T) throws(OutboxError) -> T {
        do throws(SQLiteError) {
            return try body()
        } catch {
            rollback()
            if error.isFull { logger.error("outbox storage full: append refused", metadata: ["path": "\(path)", "error": "\(error)"]) }
            throw OutboxError.from(error)
        }
    }

    /// A transaction for state changes only, committed with `synchronous=NORMAL` (see the type's documentation).
    func relaxedTransaction<T>(_ body: () throws(SQLiteError) -> T) throws(OutboxError) -> T {
        let s = try open()
        try sql { () throws(SQLiteError) in try s.syncNormal.run() }
        // Restored after the transaction has ended (committed or rolled back).
        defer { try? s.syncFull.run() }
        return try sql { () throws(SQLiteError) -> T in
            try s.begin.run()
            let value = try body()
            try s.commit.run()
            return value
        }
    }

    func rollback() {
        guard let database, !database.isAutocommit else { return }
        try? database.execute("ROLLBACK")
    }


    /// `PRAGMA cache_spill`: the dirty pages one transaction may keep in memory before SQLite writes some to the WAL.
    static let cacheSpillPages = 1024

    /// 16 random bytes as 32 hex digits.
    static func randomEpoch() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// `date` in UTC as ISO 8601 text (whole seconds; `compact`: no separators), formatted without ICU.
    static func utcText(_ date: Date, compact: Bool = false) -> String {
        UTCText.iso8601(epochSeconds: Int64(date.timeIntervalSince1970.rounded(.down)), compact: compact)
    }

    static func millis(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
    static func millis(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
    static func date(millis: Int64) -> Date { Date(timeIntervalSince1970: Double(millis) / 1000) }
}
