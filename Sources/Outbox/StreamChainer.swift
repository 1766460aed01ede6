import MeterCore

/// A stream's last record, as the next one chains onto it.
struct StreamHead: Sendable, Hashable {
    var lastSeq: UInt64
    var lastHash: [UInt8]
    /// Nil when unknown (a store from before the column, a stream continued from the high-water mark).
    var lastKeyID: String? = nil

    static let empty = StreamHead(lastSeq: 0, lastHash: StreamPosition.zeroHash)
}

/// Chains one batch of appends onto the streams' heads: each record's position (seq, prev, the previous key,
/// a waiting gap statement) and its built bytes, checked. Pure: both outbox implementations store what it
/// returns and adopt ``changed`` and ``announced()`` only once their own commit succeeded.
struct StreamChainer {
    let epoch: String
    private let heads: [String: StreamHead]
    private let book: LossStatementBook
    /// The new head of every stream this batch appended to.
    private(set) var changed: [String: StreamHead] = [:]
    /// Per stream, the seqs of this batch's records that carry a waiting gap statement.
    private(set) var carriers: [String: [UInt64]] = [:]

    init(epoch: String, heads: [String: StreamHead], book: LossStatementBook) {
        self.epoch = epoch
        self.heads = heads
        self.book = book
    }

    /// The next record of `request`'s stream: its position and the record built for it.
    mutating func chain(_ request: AppendRequest) throws(OutboxError) -> (position: StreamPosition, built: BuiltRecord) {
        let head = changed[request.meter] ?? heads[request.meter] ?? .empty
        let storeLost = book.statement(for: request.meter, index: carriers[request.meter]?.count ?? 0)
        let position = StreamPosition(epoch: epoch, seq: head.lastSeq + 1, prev: head.lastHash, previousKeyID: head.lastKeyID,
                                      storeLost: storeLost)
        let built: BuiltRecord
        do {
            built = try request.build(position)
        } catch {
            throw .recordBuilderFailed(meter: request.meter, seq: position.seq, underlying: error)
        }
        guard built.hash.count == 32 else {
            throw .invalidHash(meter: request.meter, seq: position.seq, count: built.hash.count)
        }
        changed[request.meter] = StreamHead(lastSeq: position.seq, lastHash: built.hash, lastKeyID: request.keyID ?? head.lastKeyID)
        if storeLost != nil { carriers[request.meter, default: []].append(position.seq) }
        return (position, built)
    }

    /// The gap statement book with this batch's carriers recorded.
    func announced() -> LossStatementBook {
        var announced = book
        for (meter, seqs) in carriers { announced.announced(meter: meter, carriers: seqs) }
        return announced
    }
}
