import Foundation

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
