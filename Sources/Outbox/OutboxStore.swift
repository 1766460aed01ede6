import Foundation

/// The store-and-forward queue between signing and MQTT.
///
/// ``SQLiteOutbox`` is the real one; ``InMemoryOutbox`` has the same behaviour without a file, for unit
/// tests of logic that sits on top (the publisher, replays).
public protocol OutboxStore: Actor {
    /// The store's epoch (random, made once when the store was created).
    nonisolated var epoch: String { get }

    /// Appends records in one transaction: for each request the store allocates the stream's next
    /// position, calls the builder and stores what it returns. All or nothing.
    ///
    /// `state` (key → bytes) is saved in the same transaction: the accounting state that produced these
    /// records, so that after a crash the restored state and the stored records always agree (an interval
    /// is never signed twice nor lost). Records may be empty, to save state alone.
    func append(_ requests: [AppendRequest], saving state: [String: [UInt8]]) throws(OutboxError) -> [OutboxRecord]

    /// The bytes last saved under `key` with ``append(_:saving:)``, or nil.
    func savedState(_ key: String) throws(OutboxError) -> [UInt8]?

    /// Marks up to `limit` pending records, oldest first, inflight and returns them.
    func claimPending(limit: Int) throws(OutboxError) -> [OutboxRecord]

    /// Marks inflight records delivered (their PUBACK came). Ids not inflight are ignored.
    /// Returns how many changed state.
    @discardableResult
    func markDelivered(_ ids: [Int64], at time: Date) throws(OutboxError) -> Int

    /// ``markDelivered(_:at:)`` and then ``claimPending(limit:)`` in one call: the publisher commits a half window of
    /// PUBACKs and refills it at the same moment. The SQLite outbox does both in one transaction (one commit, each
    /// page the two touch written once). The delivered records are committed even when the claim fails (the
    /// high-water mark could not be written): the claim's outcome is returned, not thrown.
    func markDelivered(_ ids: [Int64], at time: Date, thenClaim limit: Int) throws(OutboxError) -> DeliveredAndClaimed

    /// Returns inflight records to pending (a disconnect, or a negative PUBACK). Empty `ids`: all of them.
    @discardableResult
    func releaseInflight(_ ids: [Int64]) throws(OutboxError) -> Int

    /// Stored records of `meter` with seq in `seqs`, in seq order, at most `limit`.
    func records(meter: String, seqs: ClosedRange<UInt64>, limit: Int) throws(OutboxError) -> [OutboxRecord]

    /// Counts by state and meter, oldest unsent, sizes.
    func stats() throws(OutboxError) -> OutboxStats

    /// Applies retention and the byte quota (see ``OutboxConfiguration``).
    func maintain(now: Date) throws(OutboxError) -> MaintenanceReport
}

/// What ``OutboxStore/markDelivered(_:at:thenClaim:)`` did: how many records changed to delivered, and the claim.
public struct DeliveredAndClaimed: Sendable {
    public var delivered: Int
    public var claimed: Result<[OutboxRecord], OutboxError>

    public init(delivered: Int, claimed: Result<[OutboxRecord], OutboxError>) {
        self.delivered = delivered
        self.claimed = claimed
    }
}

extension OutboxStore {
    /// The two calls one after the other (stores without a shared transaction for them).
    public func markDelivered(_ ids: [Int64], at time: Date, thenClaim limit: Int) throws(OutboxError) -> DeliveredAndClaimed {
        let delivered = try markDelivered(ids, at: time)
        do throws(OutboxError) {
            return DeliveredAndClaimed(delivered: delivered, claimed: .success(try claimPending(limit: limit)))
        } catch {
            return DeliveredAndClaimed(delivered: delivered, claimed: .failure(error))
        }
    }

    /// Appends records in one transaction, saving no state.
    public func append(_ requests: [AppendRequest]) throws(OutboxError) -> [OutboxRecord] {
        try append(requests, saving: [:])
    }

    /// Appends one record to `meter`'s stream.
    public func append(meter: String, _ build: @escaping RecordBuilder) throws(OutboxError) -> OutboxRecord {
        try append([AppendRequest(meter: meter, build: build)])[0]
    }
}
