import Foundation
import Logging
import MeterCore
import SQLite

extension SQLiteOutbox {
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
            try select.bind(s.sink, at: 5)
            var records: [OutboxRecord] = []
            while try select.step() {
                records.append(OutboxRecord(id: select.int64(0), meter: meter, epoch: epoch, seq: UInt64(select.int64(1)),
                                            bytes: select.blob(5), hash: select.blob(4), state: select.int64(2) == 1 ? .pending : .delivered,
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
            // Owed: to any sink (one per store for now).
            let counts = try s.database.prepare("""
                SELECT r.meter, EXISTS(SELECT 1 FROM pending p WHERE p.record_id = r.id) AS owed, count(*), min(r.seq)
                FROM records r GROUP BY r.meter, owed
                """, persistent: false)
            var totals: [RecordState: Int64] = [:]
            while try counts.step() {
                let meter = counts.text(0) ?? ""
                let state: RecordState = counts.int64(1) == 1 ? .pending : .delivered
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
            let oldest = try s.database.scalarInt("""
                SELECT r.appended_at FROM pending p CROSS JOIN records r ON r.id = p.record_id ORDER BY p.record_id LIMIT 1
                """).map(Self.date(millis:))
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
    static func fileSize(_ path: String) -> Int64 {
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
                try scan.bind(s.sink, at: 1)
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

}
