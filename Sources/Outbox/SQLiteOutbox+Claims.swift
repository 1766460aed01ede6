import Foundation
import Logging
import MeterCore
import SQLite

extension SQLiteOutbox {
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
    struct Claim {
        var records: [OutboxRecord] = []
        var raised: [String: HighWaterMark.Entry] = [:]
        var usedReleased: [Int64] = []
        var cursor: Int64 = 0
    }

    /// Reads up to `limit` pending records to hand out, oldest first, as inflight (in memory: their rows are not
    /// written). Released records come first (they are older than any row above the cursor), then the rows above
    /// ``claimCursor``.
    func claimRows(_ s: Statements, limit: Int) throws(SQLiteError) -> Claim {
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
                try select.bind(s.sink, at: 2)
                if try select.step() { take(select) }
            }
        }
        if claim.records.count < limit {
            let select = s.selectPendingAbove
            defer { select.reset() }
            try select.bind(claimCursor, at: 1)
            try select.bind(Int64(limit - claim.records.count), at: 2)
            try select.bind(s.sink, at: 3)
            while try select.step() {
                take(select)
                claim.cursor = select.int64(0)
            }
        }
        return claim
    }

    func adopt(_ claim: Claim) {
        released.subtract(claim.usedReleased)
        claimCursor = max(claimCursor, claim.cursor)
        for record in claim.records { claimed[record.id] = record.meter }
    }

    /// Raises the high-water mark to `raised`, durably, before `records` leave: if the database later loses the
    /// claim's transaction and the appends before it, the mark still says which seqs were published. A failed
    /// write hands nothing out (the records go back to pending).
    func raiseMark(_ raised: [String: HighWaterMark.Entry], handingOut records: [OutboxRecord]) throws(OutboxError) {
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

    /// Marks inflight records delivered (inside the caller's transaction): the sink's `pending` row goes, a `deliveries`
    /// row comes. Returns the ids that changed and their size; ids not inflight are ignored. They stay in ``claimed``
    /// until ``countDelivered(_:)``, after the commit. With one sink per store, its delivery is the record's last.
    func deliverRows(_ s: Statements, _ ids: [Int64], millis: Int64) throws(SQLiteError) -> (ids: [Int64], bytes: Int64) {
        var changed: [Int64] = []
        var bytes: Int64 = 0
        let owed = s.deletePending, delivered = s.insertDelivery
        for id in ids where claimed[id] != nil {
            defer { owed.reset(); delivered.reset() }
            try owed.bind(id, at: 1)
            try owed.bind(s.sink, at: 2)
            guard try owed.step() else { continue }
            bytes += owed.int64(0)
            while try owed.step() {}
            try delivered.bind(id, at: 1)
            try delivered.bind(s.sink, at: 2)
            try delivered.bind(millis, at: 3)
            try delivered.step()
            changed.append(id)
        }
        return (changed, bytes)
    }

    func countDelivered(_ delivered: (ids: [Int64], bytes: Int64)) {
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

}
