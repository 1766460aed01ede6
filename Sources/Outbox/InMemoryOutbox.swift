import MeterCore
import Foundation

/// The outbox without a file: same positions, states, retention and quota rules as ``SQLiteOutbox``,
/// for unit tests of the logic above it. Nothing survives the process.
public actor InMemoryOutbox: OutboxStore {
    public nonisolated let epoch: String
    private let configuration: OutboxConfiguration
    private let clock: @Sendable () -> Date
    /// Records by id, in id order (ids only grow).
    private var rows: [Int64: Row] = [:]
    private var order: [Int64] = []
    private var nextID: Int64 = 1
    private var heads: [String: StreamHead] = [:]
    private var droppedTotal: Int64 = 0
    private var quotaAlarm = false
    private var state: [String: [UInt8]] = [:]
    private var book = LossStatementBook()

    private struct Row {
        var record: OutboxRecord
        var deliveredAt: Date?
    }

    public init(epoch: String = "memory", configuration: OutboxConfiguration = OutboxConfiguration(),
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.epoch = epoch
        self.configuration = configuration
        self.clock = clock
    }

    public func savedState(_ key: String) throws(OutboxError) -> [UInt8]? { state[key] }

    public func append(_ requests: [AppendRequest], saving newState: [String: [UInt8]]) throws(OutboxError) -> [OutboxRecord] {
        var chainer = StreamChainer(epoch: epoch, heads: heads, book: book)
        var records: [OutboxRecord] = []
        let now = clock()
        var id = nextID
        for request in requests {
            let (position, built) = try chainer.chain(request)
            records.append(OutboxRecord(id: id, meter: request.meter, epoch: epoch, seq: position.seq, bytes: built.bytes,
                                        hash: built.hash, state: .pending, appendedAt: now))
            id += 1
        }
        // Commit: nothing above changed the store, so a throw left it as it was.
        nextID = id
        heads.merge(chainer.changed) { $1 }
        state.merge(newState) { $1 }
        book = chainer.announced()
        for record in records {
            rows[record.id] = Row(record: record)
            order.append(record.id)
        }
        if unsentBytes + deliveredBytes > configuration.quotaBytes { _ = try maintain(now: now) }
        return records
    }

    public func claimPending(limit: Int) throws(OutboxError) -> [OutboxRecord] {
        var claimed: [OutboxRecord] = []
        for id in order where claimed.count < limit {
            guard var row = rows[id], row.record.state == .pending else { continue }
            row.record = row.record.with(state: .inflight)
            rows[id] = row
            claimed.append(row.record)
        }
        return claimed
    }

    @discardableResult
    public func markDelivered(_ ids: [Int64], at time: Date) throws(OutboxError) -> Int {
        var count = 0
        for id in ids {
            guard var row = rows[id], row.record.state == .inflight else { continue }
            row.record = row.record.with(state: .delivered)
            row.deliveredAt = time
            rows[id] = row
            count += 1
        }
        return count
    }

    @discardableResult
    public func releaseInflight(_ ids: [Int64]) throws(OutboxError) -> Int {
        var count = 0
        for id in ids.isEmpty ? order : ids {
            guard var row = rows[id], row.record.state == .inflight else { continue }
            row.record = row.record.with(state: .pending)
            rows[id] = row
            count += 1
        }
        return count
    }

    public func records(meter: String, seqs: ClosedRange<UInt64>, limit: Int) throws(OutboxError) -> [OutboxRecord] {
        Array(order.lazy.compactMap { self.rows[$0]?.record }.filter { $0.meter == meter && seqs.contains($0.seq) }.prefix(limit))
    }

    public func stats() throws(OutboxError) -> OutboxStats {
        var streams: [String: StreamStats] = [:]
        for (meter, head) in heads {
            var s = StreamStats(meter: meter)
            s.lastSeq = head.lastSeq
            streams[meter] = s
        }
        var oldest: Date?
        for id in order {
            guard let record = rows[id]?.record else { continue }
            var s = streams[record.meter] ?? StreamStats(meter: record.meter)
            switch record.state {
            case .pending: s.pending += 1
            case .inflight: s.inflight += 1
            case .delivered: s.delivered += 1
            }
            s.firstStoredSeq = min(s.firstStoredSeq ?? record.seq, record.seq)
            streams[record.meter] = s
            if record.state != .delivered { oldest = min(oldest ?? record.appendedAt, record.appendedAt) }
        }
        let list = streams.values.sorted { $0.meter < $1.meter }
        return OutboxStats(epoch: epoch, streams: list, pending: list.reduce(0) { $0 + $1.pending },
                           inflight: list.reduce(0) { $0 + $1.inflight }, delivered: list.reduce(0) { $0 + $1.delivered },
                           unsentBytes: unsentBytes, deliveredBytes: deliveredBytes, oldestUnsent: oldest,
                           droppedTotal: droppedTotal, quotaAlarm: quotaAlarm, fileBytes: 0)
    }

    public func maintain(now: Date) throws(OutboxError) -> MaintenanceReport {
        var report = MaintenanceReport()
        let cutoff = now.addingTimeInterval(-Double(configuration.retention.components.seconds))
        for id in order {
            if let row = rows[id], row.record.state == .delivered, let at = row.deliveredAt, at < cutoff {
                rows[id] = nil
                report.expired += 1
            }
        }
        let quota = configuration.quotaBytes
        if unsentBytes + deliveredBytes > quota {
            var excess = unsentBytes + deliveredBytes - quota
            for id in order where excess > 0 {
                guard let row = rows[id], row.record.state == .delivered else { continue }
                rows[id] = nil
                excess -= row.record.quotaBytes
                report.prunedForQuota += 1
            }
        }
        if unsentBytes > quota, configuration.quotaPolicy == .dropOldest {
            var excess = unsentBytes - quota
            for id in order where excess > 0 {
                guard let row = rows[id], row.record.state == .pending else { continue }
                rows[id] = nil
                excess -= row.record.quotaBytes
                let r = row.record
                if let i = report.dropped.lastIndex(where: { $0.meter == r.meter }), report.dropped[i].lastSeq + 1 == r.seq {
                    report.dropped[i].lastSeq = r.seq
                    report.dropped[i].count += 1
                } else {
                    report.dropped.append(DroppedRange(meter: r.meter, firstSeq: r.seq, lastSeq: r.seq, count: 1))
                }
            }
            droppedTotal += report.droppedCount
            for range in report.dropped { book.dropped(range.firstSeq...range.lastSeq, meter: range.meter) }
        }
        order.removeAll { rows[$0] == nil }
        let unsent = Set(rows.values.filter { $0.record.state != .delivered }.map { "\($0.record.meter)/\($0.record.seq)" })
        book.forgetCarried { meter, seq in !unsent.contains("\(meter)/\(seq)") }
        report.quotaAlarm = unsentBytes > quota
        quotaAlarm = report.quotaAlarm
        return report
    }

    private var unsentBytes: Int64 { rows.values.reduce(0) { $0 + ($1.record.state == .delivered ? 0 : $1.record.quotaBytes) } }
    private var deliveredBytes: Int64 { rows.values.reduce(0) { $0 + ($1.record.state == .delivered ? $1.record.quotaBytes : 0) } }
}
