import Dispatch
import Crypto
import Foundation
import Logging
import MeterCore

/// What happened when the outbox was opened.
public struct OutboxOpenReport: Sendable, Hashable {
    /// The store was created by this open (a new epoch).
    public var created: Bool
    /// A damaged database found at the path, moved aside (never deleted); the store was then created anew.
    public var quarantined: QuarantinedDatabase?
    /// Records that were inflight when the previous process stopped and are pending again.
    public var inflightReset: Int64
    /// Streams whose database head was behind the high-water mark: continued from the mark.
    public var recoveries: [OutboxRecovery] = []
}

/// A stream whose database had lost committed records that were already handed out for publishing (a WAL
/// that lost its tail, a power cut): its head was behind the high-water mark kept outside the database.
///
/// The outbox continues the stream from the mark, so the next record gets seq `markSeq + 1` and chains onto
/// the mark's hash: no seq is used twice. Records `storedSeq + 1 ... markSeq` are no longer stored; a replay
/// of them finds nothing, as for records pruned after delivery.
public struct OutboxRecovery: Sendable, Hashable, CustomStringConvertible {
    public var meter: String
    /// The stream's last seq in the database when it was opened.
    public var storedSeq: UInt64
    /// The highest seq that had been handed out for publishing.
    public var markSeq: UInt64
    /// The end of the interval that record covers (ms since the Unix epoch), if its appender gave one:
    /// intervals up to here were already signed and published.
    public var intervalEnd: Int64?

    public init(meter: String, storedSeq: UInt64, markSeq: UInt64, intervalEnd: Int64?) {
        self.meter = meter
        self.storedSeq = storedSeq
        self.markSeq = markSeq
        self.intervalEnd = intervalEnd
    }

    /// The seqs that left the store and are no longer in it.
    public var lostSeqs: ClosedRange<UInt64> { (storedSeq + 1)...markSeq }

    public var description: String {
        "stream \(meter): the database ends at seq \(storedSeq) but seq \(markSeq) had been published; continued from seq \(markSeq)"
    }
}

/// A damaged database file moved out of the way.
public struct QuarantinedDatabase: Sendable, Hashable, CustomStringConvertible {
    /// Where the damaged file now is (its `-wal` and `-shm`, if any, moved beside it with the same suffix).
    public var movedTo: String
    /// What the integrity check or SQLite said.
    public var reason: String

    public var description: String { "damaged outbox database moved to \(movedTo): \(reason)" }
}

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
/// Inflight is a state of this process only: a claim hands records out without writing their rows (every
/// inflight record is pending again after a restart anyway), so each record's row is written twice, by its
/// append and by its delivered mark. On disk a claimed record stays pending; `metergate outbox stats` run
/// beside the gateway counts it there, and ``stats()`` of the gateway's own store as inflight.
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

    private let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public nonisolated let epoch: String
    public nonisolated let path: String
    public nonisolated let openReport: OutboxOpenReport

    private let configuration: OutboxConfiguration
    private let logger: Logger
    private let clock: @Sendable () -> Date
    private var database: SQLiteDatabase?
    private var statements: Statements?
    /// Last seq and hash per meter, mirroring the `streams` table; changed only after a commit.
    private var heads: [String: StreamHead]
    private var unsentBytes: Int64
    private var deliveredBytes: Int64
    private var droppedTotal: Int64
    private var quotaAlarm = false
    /// What the high-water mark holds now (nil: inspection only, never written).
    private var mark: HighWaterMark?
    /// The mark's streams as text, kept in step with ``mark`` (a claim writes again only the streams it raised).
    private var markText = HighWaterMark.Text()
    /// Inflight records (handed out by a claim, neither delivered nor released): id → meter. Their rows stay pending.
    private var claimed: [Int64: String] = [:]
    /// Every pending row with an id up to this one is in ``claimed`` or ``released``; a claim continues above it.
    private var claimCursor: Int64 = 0
    /// Pending rows at or below ``claimCursor`` to hand out again first, oldest first: released claims, and any
    /// row appended with an id at or below the cursor (SQLite reuses the highest ids after deletes).
    private var released: Set<Int64> = []
    /// Signed gap statements (``StreamPosition/storeLost``): streams continued from the mark whose next record has
    /// yet to say so, quota drops, and the statements carried by records not yet delivered. Mirrors the
    /// `loss_statements` table (but for waiting damage statements, found again from the mark at each start).
    private var book = LossStatementBook()

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
                throw .database(SQLiteError(function: "PRAGMA quick_check", code: 11, message: "the outbox is damaged: \(reason)", context: path))
            case .damaged(let reason):
                let movedTo = try Self.moveAside(path: path, clock: clock)
                quarantined = QuarantinedDatabase(movedTo: movedTo, reason: reason)
                logger.error("outbox database failed its integrity check and was moved aside; starting a new store (new epoch)",
                             metadata: ["path": "\(path)", "moved_to": "\(movedTo)", "reason": "\(reason)"])
                do throws(SQLiteError) { db = try SQLiteDatabase(path: path) } catch { throw .database(error) }
            }
        }

        do throws(SQLiteError) {
            guard try db.scalarText("PRAGMA journal_mode=WAL") == "wal" else {
                throw SQLiteError(function: "sqlite3_step", code: 1, message: "the journal could not be switched to WAL", context: path)
            }
            try db.execute("PRAGMA synchronous=FULL")
            try db.execute("PRAGMA cache_size=-\(max(options.cacheKiB, 64))")
            // A commit of every meter's records (100 meters: about 150 pages: records, the (meter, seq) index,
            // saved states) dirties more pages than the capped cache holds; SQLite then wrote dirty pages to the WAL
            // mid-transaction and again at the commit (0.6 page writes a record). Dirty pages stay in memory up to
            // 1024 pages (4 MiB) of one transaction; past that (a large prune) they spill as before.
            try db.execute("PRAGMA cache_spill=\(Self.cacheSpillPages)")
            if let pages = options.maxPageCount { _ = try db.scalarInt("PRAGMA max_page_count=\(pages)") }
            try db.execute(Self.schema)
            // Stores made before records carried a digest get the column; their old rows stay unchecked.
            if try db.scalarInt("SELECT count(*) FROM pragma_table_info('records') WHERE name = 'digest'") == 0 {
                try db.execute("ALTER TABLE records ADD COLUMN digest BLOB")
            }
            if try db.scalarInt("SELECT count(*) FROM pragma_table_info('records') WHERE name = 'interval_end'") == 0 {
                try db.execute("ALTER TABLE records ADD COLUMN interval_end INTEGER")
            }
            // The key id that signed each stream's last record, so that a new key's first record names it (prev_kid).
            if try db.scalarInt("SELECT count(*) FROM pragma_table_info('streams') WHERE name = 'last_kid'") == 0 {
                try db.execute("ALTER TABLE streams ADD COLUMN last_kid TEXT")
            }
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
            let reset = options.inspectOnly ? 0 : try Self.resetInflight(db)
            try db.execute("COMMIT")
            self.epoch = epoch!
            self.droppedTotal = Int64(try Self.meta(db, "dropped_total") ?? "0") ?? 0
            (self.unsentBytes, self.deliveredBytes) = try Self.byteTotals(db)
            heads = try Self.loadHeads(db)
            self.statements = try Statements(db)
            book = try Self.loadLossStatements(db)
            report = OutboxOpenReport(created: created, quarantined: quarantined, inflightReset: reset)
        } catch {
            throw OutboxError.from(error)
        }
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

    // MARK: - Appending

    public func savedState(_ key: String) throws(OutboxError) -> [UInt8]? {
        let s = try open()
        return try sql { () throws(SQLiteError) -> [UInt8]? in
            let select = s.selectState
            defer { select.reset() }
            try select.bind(key, at: 1)
            return try select.step() ? select.blob(0) : nil
        }
    }

    public func append(_ requests: [AppendRequest], saving state: [String: [UInt8]]) throws(OutboxError) -> [OutboxRecord] {
        let s = try open()
        guard !requests.isEmpty || !state.isEmpty else { return [] }
        let now = clock()
        let nowMillis = Self.millis(now)
        var changed: [String: StreamHead] = [:]
        /// Per meter, the seqs of the records in this batch that carry a waiting gap statement.
        var carriers: [String: [UInt64]] = [:]
        var records: [OutboxRecord] = []
        records.reserveCapacity(requests.count)
        try sql { () throws(SQLiteError) in try s.begin.run() }
        for request in requests {
            let head = changed[request.meter] ?? heads[request.meter] ?? StreamHead(lastSeq: 0, lastHash: StreamPosition.zeroHash)
            let storeLost = book.statement(for: request.meter, index: carriers[request.meter]?.count ?? 0)
            let position = StreamPosition(epoch: epoch, seq: head.lastSeq + 1, prev: head.lastHash, previousKeyID: head.lastKeyID,
                                          storeLost: storeLost)
            let built: BuiltRecord
            do {
                built = try request.build(position)
            } catch {
                rollback()
                throw .recordBuilderFailed(meter: request.meter, seq: position.seq, underlying: error)
            }
            guard built.hash.count == 32 else {
                rollback()
                throw .invalidHash(meter: request.meter, seq: position.seq, count: built.hash.count)
            }
            let size = Int64(built.bytes.count + built.hash.count) + OutboxRecord.rowOverheadBytes
            let id = try sql { () throws(SQLiteError) -> Int64 in
                let insert = s.insert
                defer { insert.reset() }
                try insert.bind(request.meter, at: 1)
                try insert.bind(Int64(position.seq), at: 2)
                try insert.bind(nowMillis, at: 3)
                try insert.bind(size, at: 4)
                try insert.bind(built.hash, at: 5)
                try insert.bind(built.bytes, at: 6)
                try insert.bind(Self.digest(hash: built.hash, bytes: built.bytes), at: 7)
                if let end = request.intervalEnd { try insert.bind(end, at: 8) } else { try insert.bindNull(at: 8) }
                try insert.step()
                return s.database.lastInsertRowID
            }
            if id <= claimCursor { released.insert(id) }
            changed[request.meter] = StreamHead(lastSeq: position.seq, lastHash: built.hash, lastKeyID: request.keyID ?? head.lastKeyID)
            if storeLost != nil { carriers[request.meter, default: []].append(position.seq) }
            records.append(OutboxRecord(id: id, meter: request.meter, epoch: epoch, seq: position.seq, bytes: built.bytes,
                                        hash: built.hash, state: .pending, appendedAt: now))
        }
        try sql { () throws(SQLiteError) in
            for (meter, head) in changed {
                let upsert = s.upsertStream
                defer { upsert.reset() }
                try upsert.bind(meter, at: 1)
                try upsert.bind(Int64(head.lastSeq), at: 2)
                try upsert.bind(head.lastHash, at: 3)
                if let kid = head.lastKeyID { try upsert.bind(kid, at: 4) } else { try upsert.bindNull(at: 4) }
                try upsert.step()
            }
            for (key, value) in state {
                let save = s.saveState
                defer { save.reset() }
                try save.bind(key, at: 1)
                try save.bind(value, at: 2)
                try save.step()
            }
        }
        var announced = book
        for (meter, seqs) in carriers { announced.announced(meter: meter, carriers: seqs) }
        try sql { () throws(SQLiteError) in
            try Self.writeLossStatements(s, announced, meters: announced.meters(changedFrom: book))
            try s.commit.run()
        }
        book = announced
        heads.merge(changed) { $1 }
        unsentBytes += records.reduce(0) { $0 + $1.quotaBytes }
        if unsentBytes + deliveredBytes > configuration.quotaBytes {
            // Over quota: prune now rather than at the next maintenance tick. A failure here must not
            // report the (committed) append as failed.
            do { _ = try maintain(now: now) } catch {
                logger.error("quota maintenance after an append failed", metadata: ["error": "\(error)"])
            }
        }
        return records
    }

    // MARK: - Publishing states

    public func claimPending(limit: Int) throws(OutboxError) -> [OutboxRecord] {
        let s = try open()
        guard limit > 0 else { return [] }
        // Reads only: a claim writes no row.
        let claim = try sql { () throws(SQLiteError) in try claimRows(s, limit: limit) }
        adopt(claim)
        try raiseMark(claim.raised, handingOut: claim.records)
        return claim.records
    }

    @discardableResult
    public func markDelivered(_ ids: [Int64], at time: Date) throws(OutboxError) -> Int {
        let s = try open()
        guard !ids.isEmpty else { return 0 }
        let delivered = try relaxedTransaction { () throws(SQLiteError) in try deliverRows(s, ids, millis: Self.millis(time)) }
        countDelivered(delivered)
        return delivered.ids.count
    }

    public func markDelivered(_ ids: [Int64], at time: Date, thenClaim limit: Int) throws(OutboxError) -> DeliveredAndClaimed {
        let s = try open()
        let (delivered, claim) = try relaxedTransaction { () throws(SQLiteError) in
            let delivered = try deliverRows(s, ids, millis: Self.millis(time))
            return (delivered, limit > 0 ? try claimRows(s, limit: limit) : Claim())
        }
        countDelivered(delivered)
        adopt(claim)
        do throws(OutboxError) {
            try raiseMark(claim.raised, handingOut: claim.records)
        } catch {
            return DeliveredAndClaimed(delivered: delivered.ids.count, claimed: .failure(error))
        }
        return DeliveredAndClaimed(delivered: delivered.ids.count, claimed: .success(claim.records))
    }

    /// What a claim read: the records, per stream the entry the high-water mark must rise to before they leave,
    /// the released ids it used up and the cursor it reached. ``adopt(_:)`` makes it the actor's state once the
    /// transaction it was read in has committed.
    private struct Claim {
        var records: [OutboxRecord] = []
        var raised: [String: HighWaterMark.Entry] = [:]
        var usedReleased: [Int64] = []
        var cursor: Int64 = 0
    }

    /// Reads up to `limit` pending records to hand out, oldest first, as inflight (in memory: their rows are not
    /// written). Released records come first (they are older than any row above the cursor), then the rows above
    /// ``claimCursor``.
    private func claimRows(_ s: Statements, limit: Int) throws(SQLiteError) -> Claim {
        var claim = Claim(cursor: claimCursor)
        func take(_ select: SQLiteStatement) {
            let record = OutboxRecord(id: select.int64(0), meter: select.text(1) ?? "", epoch: epoch, seq: UInt64(select.int64(2)),
                                      bytes: select.blob(5), hash: select.blob(4), state: .inflight,
                                      appendedAt: Self.date(millis: select.int64(3)))
            if record.seq > (claim.raised[record.meter] ?? mark?.streams[record.meter])?.seq ?? 0 {
                claim.raised[record.meter] = HighWaterMark.Entry(seq: record.seq, hash: record.hash,
                                                                 intervalEnd: select.isNull(6) ? nil : select.int64(6))
            }
            claim.records.append(record)
        }
        if !released.isEmpty {
            let select = s.selectPendingByID
            for id in released.sorted() where claim.records.count < limit {
                defer { select.reset() }
                claim.usedReleased.append(id)
                try select.bind(id, at: 1)
                if try select.step() { take(select) }
            }
        }
        if claim.records.count < limit {
            let select = s.selectPendingAbove
            defer { select.reset() }
            try select.bind(claimCursor, at: 1)
            try select.bind(Int64(limit - claim.records.count), at: 2)
            while try select.step() {
                take(select)
                claim.cursor = select.int64(0)
            }
        }
        return claim
    }

    private func adopt(_ claim: Claim) {
        released.subtract(claim.usedReleased)
        claimCursor = max(claimCursor, claim.cursor)
        for record in claim.records { claimed[record.id] = record.meter }
    }

    /// Raises the high-water mark to `raised`, durably, before `records` leave: if the database later loses the
    /// claim's transaction and the appends before it, the mark still says which seqs were published. A failed
    /// write hands nothing out (the records go back to pending).
    private func raiseMark(_ raised: [String: HighWaterMark.Entry], handingOut records: [OutboxRecord]) throws(OutboxError) {
        guard !raised.isEmpty, var next = mark else { return }
        next.streams.merge(raised) { $1 }
        next.generation += 1
        var text = markText
        text.update(raised)
        do throws(OutboxError) {
            try next.write(databasePath: path, text: text.encoded(epoch: next.epoch, generation: next.generation))
        } catch {
            _ = try? releaseInflight(records.map(\.id))
            logger.error("could not write the outbox high-water mark; records stay pending", metadata: ["error": "\(error)"])
            throw error
        }
        mark = next
        markText = text
    }

    /// Marks inflight records delivered (inside the caller's transaction); returns the ids that changed and their
    /// size. Ids not inflight are ignored. They stay in ``claimed`` until ``countDelivered(_:)``, after the commit.
    private func deliverRows(_ s: Statements, _ ids: [Int64], millis: Int64) throws(SQLiteError) -> (ids: [Int64], bytes: Int64) {
        var changed: [Int64] = []
        var bytes: Int64 = 0
        let update = s.markDelivered
        for id in ids where claimed[id] != nil {
            defer { update.reset() }
            try update.bind(millis, at: 1)
            try update.bind(id, at: 2)
            if try update.step() {
                changed.append(id)
                bytes += update.int64(0)
                while try update.step() {}
            }
        }
        return (changed, bytes)
    }

    private func countDelivered(_ delivered: (ids: [Int64], bytes: Int64)) {
        for id in delivered.ids { claimed.removeValue(forKey: id) }
        unsentBytes -= delivered.bytes
        deliveredBytes += delivered.bytes
    }

    /// Returns inflight records to pending: in memory only, as their rows never left pending.
    @discardableResult
    public func releaseInflight(_ ids: [Int64]) throws(OutboxError) -> Int {
        _ = try open()
        if ids.isEmpty {
            let count = claimed.count
            claimed.removeAll(keepingCapacity: true)
            released.removeAll()
            claimCursor = 0
            return count
        }
        var count = 0
        for id in ids where claimed.removeValue(forKey: id) != nil {
            released.insert(id)
            count += 1
        }
        return count
    }

    // MARK: - Reading

    public func records(meter: String, seqs: ClosedRange<UInt64>, limit: Int) throws(OutboxError) -> [OutboxRecord] {
        let s = try open()
        return try sql { () throws(SQLiteError) -> [OutboxRecord] in
            let select = s.selectRange
            defer { select.reset() }
            try select.bind(meter, at: 1)
            try select.bind(Int64(clamping: seqs.lowerBound), at: 2)
            try select.bind(Int64(clamping: seqs.upperBound), at: 3)
            try select.bind(Int64(limit), at: 4)
            var records: [OutboxRecord] = []
            while try select.step() {
                records.append(OutboxRecord(id: select.int64(0), meter: meter, epoch: epoch, seq: UInt64(select.int64(1)),
                                            bytes: select.blob(5), hash: select.blob(4), state: RecordState(rawValue: select.int64(2)) ?? .pending,
                                            appendedAt: Self.date(millis: select.int64(3))))
            }
            return records
        }
    }

    public func stats() throws(OutboxError) -> OutboxStats {
        let s = try open()
        return try sql { () throws(SQLiteError) -> OutboxStats in
            var byMeter: [String: StreamStats] = [:]
            for (meter, head) in heads {
                var stream = StreamStats(meter: meter)
                stream.lastSeq = head.lastSeq
                byMeter[meter] = stream
            }
            let counts = try s.database.prepare("SELECT meter, state, count(*), min(seq) FROM records GROUP BY meter, state", persistent: false)
            var totals: [RecordState: Int64] = [:]
            while try counts.step() {
                let meter = counts.text(0) ?? ""
                let state = RecordState(rawValue: counts.int64(1)) ?? .pending
                let n = counts.int64(2)
                let first = UInt64(counts.int64(3))
                var stream = byMeter[meter] ?? StreamStats(meter: meter)
                switch state {
                case .pending: stream.pending = n
                case .inflight: stream.inflight = n
                case .delivered: stream.delivered = n
                }
                stream.firstStoredSeq = min(stream.firstStoredSeq ?? first, first)
                byMeter[meter] = stream
                totals[state, default: 0] += n
            }
            for meter in claimed.values {
                byMeter[meter, default: StreamStats(meter: meter)].pending -= 1
                byMeter[meter, default: StreamStats(meter: meter)].inflight += 1
            }
            totals[.pending, default: 0] -= Int64(claimed.count)
            totals[.inflight, default: 0] += Int64(claimed.count)
            var oldest: Date?
            for state in [RecordState.pending, .inflight] {
                if let millis = try s.database.scalarInt("SELECT appended_at FROM records WHERE state = \(state.rawValue) ORDER BY id LIMIT 1") {
                    let date = Self.date(millis: millis)
                    oldest = min(oldest ?? date, date)
                }
            }
            let fileBytes = Self.fileSize(path) + Self.fileSize(path + "-wal")
            return OutboxStats(epoch: epoch, streams: byMeter.values.sorted { $0.meter < $1.meter },
                               pending: totals[.pending] ?? 0, inflight: totals[.inflight] ?? 0, delivered: totals[.delivered] ?? 0,
                               unsentBytes: unsentBytes, deliveredBytes: deliveredBytes, oldestUnsent: oldest,
                               droppedTotal: droppedTotal, quotaAlarm: quotaAlarm, fileBytes: fileBytes,
                               recoveredStreams: Int64(openReport.recoveries.count))
        }
    }

    /// The size of the file at `path` in bytes, 0 if there is none (`stat(2)`). FileManager's attributes would
    /// also look up the owner's and group's names: /etc/passwd and /etc/group read at every call, once a second
    /// under the monitor.
    private static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    // MARK: - Retention and quota

    public func maintain(now: Date) throws(OutboxError) -> MaintenanceReport {
        let s = try open()
        var report = MaintenanceReport()
        let cutoff = Self.millis(now) - Self.millis(configuration.retention)
        let quota = configuration.quotaBytes
        var unsent = unsentBytes
        var delivered = deliveredBytes
        var dropped = droppedTotal
        var statements = book
        try sql { () throws(SQLiteError) in
            try s.begin.run()
            // 1. Delivered records past their retention.
            let expire = s.expireDelivered
            try expire.bind(cutoff, at: 1)
            while try expire.step() {
                report.expired += 1
                delivered -= expire.int64(0)
            }
            expire.reset()
            // 2. The quota prunes delivered records first, oldest first.
            if unsent + delivered > quota, delivered > 0 {
                let excess = unsent + delivered - quota
                var freed: Int64 = 0
                var lastID: Int64?
                let scan = s.scanDelivered
                while freed < excess, try scan.step() {
                    freed += scan.int64(1)
                    lastID = scan.int64(0)
                }
                scan.reset()
                if let lastID {
                    let prune = s.pruneDeliveredUpTo
                    try prune.bind(lastID, at: 1)
                    while try prune.step() {
                        report.prunedForQuota += 1
                        delivered -= prune.int64(0)
                    }
                    prune.reset()
                }
            }
            // 3. Unsent records alone over the quota: the configured policy.
            if unsent > quota, configuration.quotaPolicy == .dropOldest {
                let excess = unsent - quota
                var freed: Int64 = 0
                var ids: [Int64] = []
                var ranges: [DroppedRange] = []
                let scan = s.scanPending
                while freed < excess, try scan.step() {
                    // Inflight records are on their way: dropping them would state as lost what may arrive.
                    guard claimed[scan.int64(0)] == nil else { continue }
                    ids.append(scan.int64(0))
                    let meter = scan.text(1) ?? ""
                    let seq = UInt64(scan.int64(2))
                    freed += scan.int64(3)
                    if let i = ranges.lastIndex(where: { $0.meter == meter }), ranges[i].lastSeq + 1 == seq {
                        ranges[i].lastSeq = seq
                        ranges[i].count += 1
                    } else {
                        ranges.append(DroppedRange(meter: meter, firstSeq: seq, lastSeq: seq, count: 1))
                    }
                }
                scan.reset()
                if !ids.isEmpty {
                    let drop = s.dropPending
                    for id in ids {
                        defer { drop.reset() }
                        try drop.bind(id, at: 1)
                        while try drop.step() { unsent -= drop.int64(0) }
                    }
                    report.dropped = ranges
                    dropped += report.droppedCount
                    try Self.setMeta(s.database, "dropped_total", String(dropped))
                    for range in ranges { statements.dropped(range.firstSeq...range.lastSeq, meter: range.meter) }
                }
            }
            // 4. Statements whose carrying record was delivered are settled.
            if !statements.carried.isEmpty {
                let stillUnsent = s.selectUnsentSeq
                statements.forgetCarried { meter, seq in
                    defer { stillUnsent.reset() }
                    do {
                        try stillUnsent.bind(meter, at: 1)
                        try stillUnsent.bind(Int64(seq), at: 2)
                        return try !stillUnsent.step()
                    } catch {
                        return false   // kept: asked again at the next maintenance
                    }
                }
            }
            try Self.writeLossStatements(s, statements, meters: statements.meters(changedFrom: book))
            try s.commit.run()
        }
        book = statements
        unsentBytes = unsent
        deliveredBytes = delivered
        droppedTotal = dropped
        for range in report.dropped {
            logger.error("outbox over quota: dropped the oldest unsent records (quota policy drop-oldest)",
                         metadata: ["meter": "\(range.meter)", "first_seq": "\(range.firstSeq)", "last_seq": "\(range.lastSeq)",
                                    "count": "\(range.count)", "dropped_total": "\(droppedTotal)"])
        }
        report.quotaAlarm = unsent > quota
        if report.quotaAlarm != quotaAlarm {
            if report.quotaAlarm {
                logger.error("outbox over quota: unsent records alone exceed it; keeping every one (quota policy keep)",
                             metadata: ["unsent_bytes": "\(unsent)", "quota_bytes": "\(quota)"])
            } else {
                logger.notice("outbox back under its quota", metadata: ["unsent_bytes": "\(unsent)", "quota_bytes": "\(quota)"])
            }
        }
        quotaAlarm = report.quotaAlarm
        return report
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

    private func open() throws(OutboxError) -> Statements {
        guard let statements else { throw .closed }
        return statements
    }

    /// Runs `body`; on failure rolls back an open transaction and maps the error.
    private func sql<T>(_ body: () throws(SQLiteError) -> T) throws(OutboxError) -> T {
        do throws(SQLiteError) {
            return try body()
        } catch {
            rollback()
            if error.isFull { logger.error("outbox storage full: append refused", metadata: ["path": "\(path)", "error": "\(error)"]) }
            throw OutboxError.from(error)
        }
    }

    /// A transaction for state changes only, committed with `synchronous=NORMAL` (see the type's documentation).
    private func relaxedTransaction<T>(_ body: () throws(SQLiteError) -> T) throws(OutboxError) -> T {
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

    private func rollback() {
        guard let database, !database.isAutocommit else { return }
        try? database.execute("ROLLBACK")
    }

    private struct StreamHead {
        var lastSeq: UInt64
        var lastHash: [UInt8]
        /// Nil when unknown (a store from before the column, a stream continued from the high-water mark).
        var lastKeyID: String? = nil
    }

    /// `PRAGMA cache_spill`: the dirty pages one transaction may keep in memory before SQLite writes some to the WAL.
    static let cacheSpillPages = 1024

    static let schema = """
        CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS streams(meter TEXT PRIMARY KEY, last_seq INTEGER NOT NULL, last_hash BLOB NOT NULL, last_kid TEXT) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS records(
            id INTEGER PRIMARY KEY,
            meter TEXT NOT NULL,
            seq INTEGER NOT NULL,
            state INTEGER NOT NULL,
            appended_at INTEGER NOT NULL,
            delivered_at INTEGER,
            size INTEGER NOT NULL,
            hash BLOB NOT NULL,
            bytes BLOB NOT NULL,
            digest BLOB,
            interval_end INTEGER,
            UNIQUE(meter, seq));
        CREATE INDEX IF NOT EXISTS records_by_state ON records(state, id);
        CREATE TABLE IF NOT EXISTS saved_state(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS loss_statements(
            meter TEXT NOT NULL,
            from_seq INTEGER NOT NULL,
            to_seq INTEGER NOT NULL,
            cause TEXT NOT NULL,
            carried_by INTEGER);
        """

    /// The prepared statements, made once.
    private final class Statements {
        let database: SQLiteDatabase
        let begin, commit, syncNormal, syncFull: SQLiteStatement
        let insert, upsertStream: SQLiteStatement
        let saveState, selectState: SQLiteStatement
        let selectPendingAbove, selectPendingByID, markDelivered, selectRange: SQLiteStatement
        let expireDelivered, scanDelivered, pruneDeliveredUpTo, scanPending, dropPending: SQLiteStatement
        let deleteLossStatements, insertLossStatement, selectUnsentSeq: SQLiteStatement

        init(_ db: SQLiteDatabase) throws(SQLiteError) {
            database = db
            begin = try db.prepare("BEGIN IMMEDIATE")
            commit = try db.prepare("COMMIT")
            syncNormal = try db.prepare("PRAGMA synchronous=NORMAL")
            syncFull = try db.prepare("PRAGMA synchronous=FULL")
            saveState = try db.prepare("INSERT INTO saved_state(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            selectState = try db.prepare("SELECT value FROM saved_state WHERE key = ?1")
            insert = try db.prepare("""
                INSERT INTO records(meter, seq, state, appended_at, size, hash, bytes, digest, interval_end)
                VALUES(?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8)
                """)
            upsertStream = try db.prepare("""
                INSERT INTO streams(meter, last_seq, last_hash, last_kid) VALUES(?1, ?2, ?3, ?4)
                ON CONFLICT(meter) DO UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash, last_kid = excluded.last_kid
                """)
            selectPendingAbove = try db.prepare("""
                SELECT id, meter, seq, appended_at, hash, bytes, interval_end FROM records WHERE state = 0 AND id > ?1 ORDER BY id LIMIT ?2
                """)
            selectPendingByID = try db.prepare("SELECT id, meter, seq, appended_at, hash, bytes, interval_end FROM records WHERE id = ?1 AND state = 0")
            markDelivered = try db.prepare("UPDATE records SET state = 2, delivered_at = ?1 WHERE id = ?2 AND state = 0 RETURNING size")
            selectRange = try db.prepare("""
                SELECT id, seq, state, appended_at, hash, bytes FROM records
                WHERE meter = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq LIMIT ?4
                """)
            expireDelivered = try db.prepare("DELETE FROM records WHERE state = 2 AND delivered_at < ?1 RETURNING size")
            scanDelivered = try db.prepare("SELECT id, size FROM records WHERE state = 2 ORDER BY id")
            pruneDeliveredUpTo = try db.prepare("DELETE FROM records WHERE state = 2 AND id <= ?1 RETURNING size")
            scanPending = try db.prepare("SELECT id, meter, seq, size FROM records WHERE state = 0 ORDER BY id")
            dropPending = try db.prepare("DELETE FROM records WHERE id = ?1 AND state = 0 RETURNING size")
            deleteLossStatements = try db.prepare("DELETE FROM loss_statements WHERE meter = ?1")
            insertLossStatement = try db.prepare("INSERT INTO loss_statements(meter, from_seq, to_seq, cause, carried_by) VALUES(?1, ?2, ?3, ?4, ?5)")
            selectUnsentSeq = try db.prepare("SELECT 1 FROM records WHERE meter = ?1 AND seq = ?2 AND state <> 2")
        }
    }

    private enum OpenFailure: Error {
        case damaged(String)
        case failed(OutboxError)
    }

    /// Opens the file and runs the integrity check; corruption is `.damaged`, anything else `.failed`.
    private static func openVerified(path: String, check: IntegrityCheck, create: Bool) throws(OpenFailure) -> SQLiteDatabase {
        let db: SQLiteDatabase
        var problems: [String] = []
        do throws(SQLiteError) {
            db = try SQLiteDatabase(path: path, create: create)
            switch check {
            case .quick, .full:
                let statement = try db.prepare(check == .quick ? "PRAGMA quick_check" : "PRAGMA integrity_check", persistent: false)
                while try statement.step(), problems.count < 5 {
                    if let line = statement.text(0), line != "ok" { problems.append(line) }
                }
            case .none:
                _ = try db.scalarInt("SELECT count(*) FROM sqlite_master")
            }
        } catch {
            if error.isCorrupt { throw .damaged(error.description) }
            throw .failed(.database(error))
        }
        if !problems.isEmpty { throw .damaged(problems.joined(separator: "; ")) }
        if check != .none {
            var damage: String?
            do throws(SQLiteError) {
                damage = try contentDamage(db)
            } catch {
                if error.isCorrupt { throw .damaged(error.description) }
                throw .failed(.database(error))
            }
            if let damage { throw .damaged(damage) }
        }
        return db
    }

    /// SHA-256 over a record's hash and bytes, stored with it, so that a changed value in either is found.
    static func digest(hash: [UInt8], bytes: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: hash)
        hasher.update(data: bytes)
        return Array(hasher.finalize())
    }

    /// What the structural check cannot see: a stored value that changed (a flipped bit on a bad SD card).
    /// Every record must still match the digest stored with it, and each stream's head (the hash the next
    /// record chains onto) must be its last record's hash; otherwise the next record would be signed onto a
    /// bad link, or a changed record published or replayed.
    private static func contentDamage(_ db: SQLiteDatabase) throws(SQLiteError) -> String? {
        guard try db.scalarInt("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('streams', 'records')") == 2 else {
            return nil   // a new store
        }
        let heads = try db.prepare("""
            SELECT s.meter, s.last_seq, s.last_hash, r.hash FROM streams s
            LEFT JOIN records r ON r.meter = s.meter AND r.seq = s.last_seq
            """, persistent: false)
        while try heads.step() {
            guard !heads.isNull(3) else { continue }   // the head record was pruned after delivery
            if heads.blob(2) != heads.blob(3) {
                return "stream \(heads.text(0) ?? "?"): the chain head does not match record seq \(heads.int64(1))"
            }
        }
        guard try db.scalarInt("SELECT count(*) FROM pragma_table_info('records') WHERE name = 'digest'") == 1 else { return nil }
        let rows = try db.prepare("SELECT meter, seq, hash, bytes, digest FROM records WHERE digest IS NOT NULL", persistent: false)
        while try rows.step() {
            if digest(hash: rows.blob(2), bytes: rows.blob(3)) != rows.blob(4) {
                return "stream \(rows.text(0) ?? "?"): record seq \(rows.int64(1)) no longer matches the digest stored with it"
            }
        }
        return nil
    }

    /// Renames the file (and its WAL and shared-memory files) to `<path>.damaged-<UTC time>`.
    private static func moveAside(path: String, clock: () -> Date) throws(OutboxError) -> String {
        var target = "\(path).damaged-\(utcText(clock(), compact: true))"
        var n = 1
        while FileManager.default.fileExists(atPath: target) {
            n += 1
            target = "\(path).damaged-\(utcText(clock(), compact: true))-\(n)"
        }
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            if rename(path + suffix, target + suffix) != 0 {
                let code = errno
                throw .database(SQLiteError(function: "rename", code: 14, message: String(cString: strerror(code)),
                                            context: "moving the damaged \(path + suffix) aside to \(target + suffix)"))
            }
        }
        return target
    }

    private static func meta(_ db: SQLiteDatabase, _ key: String) throws(SQLiteError) -> String? {
        let statement = try db.prepare("SELECT value FROM meta WHERE key = ?1", persistent: false)
        try statement.bind(key, at: 1)
        return try statement.step() ? statement.text(0) : nil
    }

    private static func setMeta(_ db: SQLiteDatabase, _ key: String, _ value: String) throws(SQLiteError) {
        let statement = try db.prepare("INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", persistent: false)
        try statement.bind(key, at: 1)
        try statement.bind(value, at: 2)
        try statement.step()
    }

    private static func resetInflight(_ db: SQLiteDatabase) throws(SQLiteError) -> Int64 {
        try db.execute("UPDATE records SET state = 0 WHERE state = 1")
        return db.changes
    }

    private static func byteTotals(_ db: SQLiteDatabase) throws(SQLiteError) -> (unsent: Int64, delivered: Int64) {
        let unsent = try db.scalarInt("SELECT sum(size) FROM records WHERE state IN (0, 1)") ?? 0
        let delivered = try db.scalarInt("SELECT sum(size) FROM records WHERE state = 2") ?? 0
        return (unsent, delivered)
    }

    /// Reads the high-water mark and continues every stream whose database head is behind it from the mark
    /// (`heads` changes in memory only: the `streams` row follows with the stream's next append, so a restart
    /// before then finds and reports the same loss again). A mark of another epoch is replaced by an empty
    /// one for this epoch: the old seqs belong to the old chain. A store made by this open (a new epoch)
    /// removes any mark left by an earlier store unread, damaged or not: no seq of a new epoch has left yet.
    private static func applyMark(databasePath: String, epoch: String, created: Bool, heads: inout [String: StreamHead],
                                  logger: Logger) throws(OutboxError) -> (HighWaterMark, [OutboxRecovery]) {
        if created {
            for slot in HighWaterMark.paths(forDatabase: databasePath) where FileManager.default.fileExists(atPath: slot) {
                guard unlink(slot) == 0 else { throw .markFileUnreadable(path: slot, call: "unlink", code: errno) }
                logger.notice("removed the high-water mark of an earlier store; the new store starts a new epoch", metadata: ["path": "\(slot)"])
            }
            return (HighWaterMark(epoch: epoch, streams: [:]), [])
        }
        guard let found = try HighWaterMark.load(databasePath: databasePath, logger: logger) else {
            return (HighWaterMark(epoch: epoch, streams: [:]), [])
        }
        guard found.epoch == epoch else {
            logger.notice("the outbox high-water mark belongs to another store epoch; starting a new mark",
                          metadata: ["path": "\(databasePath).mark-*", "mark_epoch": "\(found.epoch)", "epoch": "\(epoch)"])
            return (HighWaterMark(epoch: epoch, streams: [:], generation: found.generation), [])
        }
        var recoveries: [OutboxRecovery] = []
        for (meter, entry) in found.streams.sorted(by: { $0.key < $1.key }) {
            let stored = heads[meter]?.lastSeq ?? 0
            guard stored < entry.seq else { continue }
            let recovery = OutboxRecovery(meter: meter, storedSeq: stored, markSeq: entry.seq, intervalEnd: entry.intervalEnd)
            recoveries.append(recovery)
            heads[meter] = StreamHead(lastSeq: entry.seq, lastHash: entry.hash, lastKeyID: heads[meter]?.lastKeyID)
            logger.error("""
                the outbox database lost committed records that had already been published (a damaged or cut WAL, or a power \
                cut); continuing the stream from its high-water mark so that no seq is used twice
                """,
                         metadata: ["meter": "\(meter)", "db_last_seq": "\(stored)", "mark_seq": "\(entry.seq)",
                                    "lost_seqs": "\(recovery.lostSeqs)", "mark_interval_end_ms": "\(entry.intervalEnd.map { "\($0)" } ?? "-")",
                                    "mark_generation": "\(found.generation)"])
        }
        return (found, recoveries)
    }

    /// Replaces the stored gap statements of `meters` with the book's (inside the caller's transaction).
    private static func writeLossStatements(_ s: Statements, _ book: LossStatementBook, meters: Set<String>) throws(SQLiteError) {
        for meter in meters {
            let delete = s.deleteLossStatements
            defer { delete.reset() }
            try delete.bind(meter, at: 1)
            try delete.run()
            for row in book.persistentRows(meter: meter) {
                let insert = s.insertLossStatement
                defer { insert.reset() }
                try insert.bind(meter, at: 1)
                try insert.bind(Int64(row.loss.seqs.lowerBound), at: 2)
                try insert.bind(Int64(row.loss.seqs.upperBound), at: 3)
                try insert.bind(row.loss.cause.rawValue, at: 4)
                if let carrier = row.carrier { try insert.bind(Int64(carrier), at: 5) } else { try insert.bindNull(at: 5) }
                try insert.step()
            }
        }
    }

    private static func loadLossStatements(_ db: SQLiteDatabase) throws(SQLiteError) -> LossStatementBook {
        var book = LossStatementBook()
        let select = try db.prepare("SELECT meter, from_seq, to_seq, cause, carried_by FROM loss_statements ORDER BY meter, from_seq", persistent: false)
        while try select.step() {
            guard let meter = select.text(0), let cause = select.text(3).flatMap(StoreLoss.Cause.init(rawValue:)),
                  select.int64(1) >= 1, select.int64(2) >= select.int64(1) else {
                throw SQLiteError(function: "sqlite3_step", code: 11, message: "a stored gap statement is not readable", context: "loss_statements")
            }
            book.restore(StoreLoss(seqs: UInt64(select.int64(1))...UInt64(select.int64(2)), cause: cause), meter: meter,
                         carrier: select.isNull(4) ? nil : UInt64(select.int64(4)))
        }
        return book
    }

    private static func loadHeads(_ db: SQLiteDatabase) throws(SQLiteError) -> [String: StreamHead] {
        let statement = try db.prepare("SELECT meter, last_seq, last_hash, last_kid FROM streams", persistent: false)
        var heads: [String: StreamHead] = [:]
        while try statement.step() {
            heads[statement.text(0) ?? ""] = StreamHead(lastSeq: UInt64(statement.int64(1)), lastHash: statement.blob(2),
                                                       lastKeyID: statement.isNull(3) ? nil : statement.text(3))
        }
        return heads
    }

    /// 16 random bytes as 32 hex digits.
    private static func randomEpoch() -> String {
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

extension SQLiteStatement {
    /// Steps a statement that returns no rows and resets it.
    func run() throws(SQLiteError) {
        defer { reset() }
        while try step() {}
    }
}
