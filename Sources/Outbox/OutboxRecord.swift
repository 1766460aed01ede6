import Foundation
import MeterCore

/// The bytes the signing code made for a position, and their hash (the next record's `prev`).
public typealias BuiltRecord = (bytes: [UInt8], hash: [UInt8])

/// Builds a record once its position is known. Called inside the append transaction, so a crash
/// either keeps both the position and the record or neither: a seq is never reused or skipped.
public typealias RecordBuilder = @Sendable (StreamPosition) throws -> BuiltRecord

/// One record to append to a meter's stream.
public struct AppendRequest: Sendable {
    public let meter: String
    /// The end of the interval the record covers (ms since the Unix epoch), if it covers one. The outbox
    /// keeps it with the record and in its high-water mark, so that after the store lost committed records
    /// the appender can tell which intervals were already published (``OutboxRecovery/intervalEnd``).
    public let intervalEnd: Int64?
    public let build: RecordBuilder
    /// The key id `build` signs with: kept as the stream's last, and handed to the next record's position as
    /// ``StreamPosition/previousKeyID``, so the first record of a new key names the one before (rotation).
    public let keyID: String?

    public init(meter: String, intervalEnd: Int64? = nil, keyID: String? = nil, build: @escaping RecordBuilder) {
        self.meter = meter
        self.intervalEnd = intervalEnd
        self.keyID = keyID
        self.build = build
    }
}

/// Where a record is on its way to the broker.
public enum RecordState: Int64, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Committed, not yet handed to MQTT (or handed and not acknowledged before a disconnect or restart).
    case pending = 0
    /// Handed to MQTT, waiting for PUBACK.
    case inflight = 1
    /// Acknowledged by the broker; kept for the retention period for replays.
    case delivered = 2

    public var description: String {
        switch self {
        case .pending: return "pending"
        case .inflight: return "inflight"
        case .delivered: return "delivered"
        }
    }
}

/// A stored record.
public struct OutboxRecord: Sendable, Hashable {
    /// The store's row id: increases with every append, so it orders records oldest first.
    public let id: Int64
    public let meter: String
    public let epoch: String
    public let seq: UInt64
    /// The record as the signing code made it (for the default envelopes: one line of text).
    public let bytes: [UInt8]
    /// SHA-256 of `bytes` (the next record's `prev`).
    public let hash: [UInt8]
    public let state: RecordState
    /// When the record was appended.
    public let appendedAt: Date

    public init(id: Int64, meter: String, epoch: String, seq: UInt64, bytes: [UInt8], hash: [UInt8], state: RecordState, appendedAt: Date) {
        self.id = id
        self.meter = meter
        self.epoch = epoch
        self.seq = seq
        self.bytes = bytes
        self.hash = hash
        self.state = state
        self.appendedAt = appendedAt
    }

    /// The bytes the quota counts for this record: its record bytes, its hash and a fixed per-row overhead.
    public var quotaBytes: Int64 { Int64(bytes.count + hash.count) + OutboxRecord.rowOverheadBytes }

    /// An estimate of SQLite's per-row cost (row header, index entries) added to each record in quota sums.
    public static let rowOverheadBytes: Int64 = 64

    /// The record with another state.
    public func with(state: RecordState) -> OutboxRecord {
        OutboxRecord(id: id, meter: meter, epoch: epoch, seq: seq, bytes: bytes, hash: hash, state: state, appendedAt: appendedAt)
    }
}

/// What to do when the records that are not yet delivered alone exceed the byte quota.
public enum OutboxQuotaPolicy: String, Sendable, Hashable, CaseIterable {
    /// Keep every unsent record, raise the alarm and log it. Money is never dropped silently.
    case keep
    /// Drop the oldest pending records, counted and logged (the receiver sees the seq gap).
    case dropOldest = "drop-oldest"
}

/// Counts for one meter stream.
public struct StreamStats: Sendable, Hashable {
    public var meter: String
    public var pending: Int64 = 0
    public var inflight: Int64 = 0
    public var delivered: Int64 = 0
    /// The last seq allocated in this stream (0: none yet).
    public var lastSeq: UInt64 = 0
    /// The lowest seq still stored (nil when none is).
    public var firstStoredSeq: UInt64?

    public init(meter: String) { self.meter = meter }
}

/// A summary of the store, for `metergate outbox stats` and metrics.
public struct OutboxStats: Sendable, Hashable {
    public var epoch: String
    public var streams: [StreamStats]
    public var pending: Int64
    public var inflight: Int64
    public var delivered: Int64
    /// Quota bytes of records not yet delivered (pending and inflight).
    public var unsentBytes: Int64
    /// Quota bytes of delivered records.
    public var deliveredBytes: Int64
    /// When the oldest pending or inflight record was appended.
    public var oldestUnsent: Date?
    /// Records dropped by the `drop-oldest` quota policy since the store was created.
    public var droppedTotal: Int64
    /// Whether unsent records alone exceed the quota (the alarm of the `keep` policy).
    public var quotaAlarm: Bool
    /// The database file and its WAL, in bytes (0 for the in-memory store).
    public var fileBytes: Int64
    /// Streams that were continued from the high-water mark when the store was opened, because the database
    /// had lost committed records (see ``OutboxRecovery``).
    public var recoveredStreams: Int64 = 0

    public var totalRecords: Int64 { pending + inflight + delivered }
}

/// What one maintenance pass (retention and quota) did.
public struct MaintenanceReport: Sendable, Hashable {
    /// Delivered records removed because they were older than the retention period.
    public var expired: Int64 = 0
    /// Delivered records removed to bring the store under its quota.
    public var prunedForQuota: Int64 = 0
    /// Unsent records dropped by the `drop-oldest` policy, per meter: (meter, first seq, last seq, count).
    public var dropped: [DroppedRange] = []
    /// Whether unsent records alone still exceed the quota.
    public var quotaAlarm: Bool = false

    public init() {}

    public var droppedCount: Int64 { dropped.reduce(0) { $0 + $1.count } }
}

/// A run of unsent records of one meter that the `drop-oldest` policy removed.
public struct DroppedRange: Sendable, Hashable, CustomStringConvertible {
    public var meter: String
    public var firstSeq: UInt64
    public var lastSeq: UInt64
    public var count: Int64

    public var description: String { "\(meter) seq \(firstSeq)...\(lastSeq) (\(count) records)" }
}
