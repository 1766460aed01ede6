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

extension OutboxStore {
    /// Appends records in one transaction, saving no state.
    public func append(_ requests: [AppendRequest]) throws(OutboxError) -> [OutboxRecord] {
        try append(requests, saving: [:])
    }

    /// Appends one record to `meter`'s stream.
    public func append(meter: String, _ build: @escaping RecordBuilder) throws(OutboxError) -> OutboxRecord {
        try append([AppendRequest(meter: meter, build: build)])[0]
    }
}
