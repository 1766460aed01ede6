/// Where the next signed record of one meter stream goes: the outbox hands this to the signer inside the
/// transaction that appends the record, so a crash can never reuse or skip a `seq`.
///
/// A meter stream is (gateway, meter, epoch). `seq` rises by exactly 1 per record within an epoch; a new
/// epoch (a random id) starts only when the store is new, and its first record has `seq` 1 and a `prev`
/// of 32 zero bytes.
public struct StreamPosition: Sendable, Hashable {
    /// The store's epoch: 1 to 64 characters from `A-Z a-z 0-9 - _`.
    public var epoch: String
    /// The number of this record within the epoch, starting at 1.
    public var seq: UInt64
    /// SHA-256 of the signed payload bytes of the previous record of this stream (32 bytes), or 32 zero
    /// bytes for the first record of an epoch.
    public var prev: [UInt8]
    /// The key id that signed the previous record, when the outbox knows it. When it differs from the
    /// signer's key, the new record names it and so starts a new chain segment (key rotation).
    public var previousKeyID: String?
    /// Set on a record that states, signed (`store_lost`), seqs of its stream the store no longer holds: records
    /// lost with a damaged database after they were published, or unsent records the quota policy dropped.
    public var storeLost: StoreLoss?

    public init(epoch: String, seq: UInt64, prev: [UInt8], previousKeyID: String? = nil, storeLost: StoreLoss? = nil) {
        self.epoch = epoch
        self.seq = seq
        self.prev = prev
        self.previousKeyID = previousKeyID
        self.storeLost = storeLost
    }

    /// The position of the first record of a new epoch.
    public static func first(epoch: String) -> StreamPosition {
        StreamPosition(epoch: epoch, seq: 1, prev: StreamPosition.zeroHash)
    }

    /// The `prev` of a first record: 32 zero bytes.
    public static let zeroHash = [UInt8](repeating: 0, count: 32)
}

/// Seqs of a meter stream that the gateway's store no longer holds, and why: what a record's signed
/// `store_lost` member states, so that a receiver sees an explicit, signed gap rather than a silent one.
public struct StoreLoss: Sendable, Hashable, CustomStringConvertible {
    public enum Cause: String, Sendable, Hashable, CaseIterable {
        /// The database came back without records it had already published (a cut WAL, a power cut).
        /// Written without a `cause` member (the first form of `store_lost`).
        case damage
        /// The `drop-oldest` quota policy deleted unsent records (`"cause": "quota"`).
        case quota
    }

    public var seqs: ClosedRange<UInt64>
    public var cause: Cause

    public init(seqs: ClosedRange<UInt64>, cause: Cause) {
        self.seqs = seqs
        self.cause = cause
    }

    public var description: String { "\(seqs.lowerBound)...\(seqs.upperBound) (\(cause.rawValue))" }
}
