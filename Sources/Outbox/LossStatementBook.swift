import MeterCore

/// The outbox's signed gap statements (`store_lost`): seqs a stream's store no longer holds, waiting for the
/// stream's next records to state them, and the statements already carried by records not yet delivered.
///
/// A statement goes out on the next record of its stream, one statement per record, so a receiver that misses
/// the seqs sees an explicit, signed gap. A carried statement is remembered until its record is delivered:
/// when the quota policy drops the carrying record too, the statement waits again (merged with the new drop),
/// so a dropped statement never turns an explained gap back into a silent one.
struct LossStatementBook: Sendable, Equatable {
    /// Per meter, statements no record carries yet, in seq order.
    private(set) var waiting: [String: [StoreLoss]] = [:]
    /// Per meter, statements carried by a record that may still be dropped, by the carrier's seq.
    private(set) var carried: [String: [UInt64: StoreLoss]] = [:]

    /// Queues `loss` for the next records of `meter`, merged with a waiting statement of the same cause that
    /// it overlaps or touches.
    mutating func add(_ loss: StoreLoss, meter: String) {
        var list = waiting[meter] ?? []
        var merged = loss
        list.removeAll { other in
            guard other.cause == merged.cause, Self.touch(other.seqs, merged.seqs) else { return false }
            merged.seqs = min(other.seqs.lowerBound, merged.seqs.lowerBound)...max(other.seqs.upperBound, merged.seqs.upperBound)
            return true
        }
        let at = list.firstIndex { $0.seqs.lowerBound > merged.seqs.lowerBound } ?? list.count
        list.insert(merged, at: at)
        waiting[meter] = list
    }

    /// The unsent records `seqs` of `meter` were dropped by the quota policy: the statements any of them carried
    /// wait again, and the drop itself is queued.
    mutating func dropped(_ seqs: ClosedRange<UInt64>, meter: String) {
        for (carrier, loss) in carried[meter] ?? [:] where seqs.contains(carrier) {
            carried[meter]?[carrier] = nil
            add(loss, meter: meter)
        }
        if carried[meter]?.isEmpty == true { carried[meter] = nil }
        add(StoreLoss(seqs: seqs, cause: .quota), meter: meter)
    }

    /// The statement the `index`-th next record of `meter` (0 for the first) carries.
    func statement(for meter: String, index: Int) -> StoreLoss? {
        guard let list = waiting[meter], index < list.count else { return nil }
        return list[index]
    }

    /// The records `carriers` of `meter` (in order) were committed carrying the first waiting statements.
    mutating func announced(meter: String, carriers: [UInt64]) {
        guard var list = waiting[meter], !carriers.isEmpty else { return }
        for carrier in carriers where !list.isEmpty {
            carried[meter, default: [:]][carrier] = list.removeFirst()
        }
        waiting[meter] = list.isEmpty ? nil : list
    }

    /// Forgets the statements whose carrying record was delivered (or is otherwise gone without a drop).
    mutating func forgetCarried(where delivered: (_ meter: String, _ seq: UInt64) -> Bool) {
        for (meter, byCarrier) in carried {
            let kept = byCarrier.filter { !delivered(meter, $0.key) }
            carried[meter] = kept.isEmpty ? nil : kept
        }
    }

    var isEmpty: Bool { waiting.isEmpty && carried.isEmpty }

    /// The statements worth keeping across a restart for `meter`: every carried one, and the waiting quota drops
    /// (a waiting damage statement is found again from the high-water mark at the next start).
    func persistentRows(meter: String) -> [(loss: StoreLoss, carrier: UInt64?)] {
        let waitingRows = (waiting[meter] ?? []).filter { $0.cause != .damage }.map { (loss: $0, carrier: UInt64?.none) }
        let carriedRows = (carried[meter] ?? [:]).sorted { $0.key < $1.key }.map { (loss: $0.value, carrier: Optional($0.key)) }
        return waitingRows + carriedRows
    }

    /// Rebuilds the book from stored rows.
    mutating func restore(_ loss: StoreLoss, meter: String, carrier: UInt64?) {
        if let carrier { carried[meter, default: [:]][carrier] = loss } else { add(loss, meter: meter) }
    }

    /// The meters whose statements differ between `old` and this book.
    func meters(changedFrom old: LossStatementBook) -> Set<String> {
        let all = Set(waiting.keys).union(carried.keys).union(old.waiting.keys).union(old.carried.keys)
        return all.filter { waiting[$0] != old.waiting[$0] || carried[$0] != old.carried[$0] }
    }

    /// Whether two seq ranges overlap or are next to each other.
    private static func touch(_ a: ClosedRange<UInt64>, _ b: ClosedRange<UInt64>) -> Bool {
        a.overlaps(b) || (a.upperBound < .max && a.upperBound + 1 == b.lowerBound) || (b.upperBound < .max && b.upperBound + 1 == a.lowerBound)
    }
}
