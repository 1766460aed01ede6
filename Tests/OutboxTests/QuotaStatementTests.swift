import Foundation
import MeterCore
@testable import Outbox
import MeterGateTesting
import TestSupport
import Testing

/// Unsent records the `drop-oldest` quota policy deletes become an explicit, signed gap: the next records of
/// their stream state them (`store_lost` with cause `quota`), one statement per record.
@Suite(.timeLimit(.minutes(5))) struct QuotaStatementTests {
    /// A chained record whose text ends with the statement its position carried ("lost=3-5/quota" or "lost=none").
    func noting(_ meter: String) -> RecordBuilder {
        { position in
            let lost = position.storeLost.map { "\($0.seqs.lowerBound)-\($0.seqs.upperBound)/\($0.cause.rawValue)" } ?? "none"
            return try chainedRecord(meter, payload: "lost=\(lost)")(position)
        }
    }

    func statement(_ record: OutboxRecord) -> String {
        String(String(decoding: record.bytes, as: UTF8.self).split(separator: "=").last ?? "")
    }

    /// A quota that holds `records` records of `noting`'s size (payload padded to 900 bytes).
    func quota(records: Int64) throws -> OutboxConfiguration {
        let probe = try noting("a")(StreamPosition(epoch: probeEpoch, seq: 10, prev: StreamPosition.zeroHash))
        let perRecord = Int64(probe.bytes.count + 32) + OutboxRecord.rowOverheadBytes
        return OutboxConfiguration(quotaBytes: perRecord * records + perRecord / 2, quotaPolicy: .dropOldest)
    }

    @Test(arguments: StoreKind.allCases)
    func theNextRecordOfTheStreamStatesTheDroppedSeqs(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await kind.make(dir, try quota(records: 4))
        var records: [OutboxRecord] = []
        for _ in 0..<9 { records.append(try await store.append(meter: "a", noting("a"))) }
        // Each append over the quota dropped the oldest unsent record (1 when 5 came, 2 when 6 came, …);
        // each next record states the one dropped before it.
        #expect(records.prefix(5).map { statement($0) } == Array(repeating: "none", count: 5))
        #expect(records.dropFirst(5).map { statement($0) } == ["1-1/quota", "2-2/quota", "3-3/quota", "4-4/quota"])
        let kept = try await store.records(meter: "a", seqs: 1...100, limit: 100)
        #expect(kept.map(\.seq) == [6, 7, 8, 9])
        #expect(try await store.stats().droppedTotal == 5)
    }

    @Test(arguments: StoreKind.allCases)
    func aStatementWhoseRecordIsDroppedTooIsStatedAgainMerged(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await kind.make(dir, try quota(records: 3))
        for _ in 0..<3 { _ = try await store.append(meter: "a", noting("a")) }
        _ = try await store.append(meter: "b", noting("b"))   // drops a/1
        let carrier = try await store.append(meter: "a", noting("a"))   // a/4 states 1; drops a/2
        #expect(carrier.seq == 4 && statement(carrier) == "1-1/quota")
        for _ in 0..<3 { _ = try await store.append(meter: "b", noting("b")) }   // drops a/3, a/4 (the carrier), b/1
        let a = try await store.records(meter: "a", seqs: 1...100, limit: 100)
        #expect(a.isEmpty)
        let next = try await store.append(meter: "a", noting("a"))
        #expect(next.seq == 5)
        #expect(statement(next) == "1-4/quota", "1 (its carrier dropped) and 2…4 in one statement")
    }

    @Test(arguments: StoreKind.allCases)
    func aDeliveredCarrierSettlesItsStatement(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await kind.make(dir, try quota(records: 2))
        for _ in 0..<3 { _ = try await store.append(meter: "a", noting("a")) }   // drops 1
        let carrier = try await store.append(meter: "a", noting("a"))           // 4 states 1; drops 2
        #expect(statement(carrier) == "1-1/quota")
        let claimed = try await store.claimPending(limit: 10)
        try await store.markDelivered(claimed.map(\.id), at: Date())
        _ = try await store.maintain(now: Date())
        // Delivered records are pruned first now; nothing unsent is dropped, so nothing more is stated.
        let fifth = try await store.append(meter: "a", noting("a"))
        #expect(statement(fifth) == "2-2/quota")
        let sixth = try await store.append(meter: "a", noting("a"))
        #expect(statement(sixth) == "none")
    }

    @Test func aWaitingStatementSurvivesARestart() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let first = try await SQLiteOutbox.open(path: path, configuration: try quota(records: 2))
        for _ in 0..<4 { _ = try await first.append(meter: "a", noting("a")) }
        // 4 states 1; 2 was dropped when 4 came and waits.
        await first.close()
        let second = try await SQLiteOutbox.open(path: path, configuration: try quota(records: 2))
        let fifth = try await second.append(meter: "a", noting("a"))
        #expect(fifth.seq == 5)
        #expect(statement(fifth) == "2-2/quota")
        // The carried statement of 4 survived too: dropping 4 states 1 again, with 3 and 4.
        for _ in 0..<2 { _ = try await second.append(meter: "b", noting("b")) }
        await second.close()
        let third = try await SQLiteOutbox.open(path: path, configuration: try quota(records: 2))
        let next = try await third.append(meter: "a", noting("a"))
        #expect(try await third.records(meter: "a", seqs: 1...100, limit: 100).map(\.seq) == [next.seq])
        #expect(statement(next) == "1-5/quota", "1 (carried by the dropped 4), 2 (carried by the dropped 5), 3…5")
        await third.close()
    }
}

@Suite(.timeLimit(.minutes(5))) struct LossStatementBookTests {
    @Test func touchingStatementsOfOneCauseMergeAndOthersStayApart() {
        var book = LossStatementBook()
        book.add(StoreLoss(seqs: 5...6, cause: .quota), meter: "a")
        book.add(StoreLoss(seqs: 7...9, cause: .quota), meter: "a")
        book.add(StoreLoss(seqs: 1...3, cause: .damage), meter: "a")
        book.add(StoreLoss(seqs: 12...12, cause: .quota), meter: "a")
        #expect(book.waiting["a"] == [StoreLoss(seqs: 1...3, cause: .damage), StoreLoss(seqs: 5...9, cause: .quota),
                                      StoreLoss(seqs: 12...12, cause: .quota)])
        #expect(book.statement(for: "a", index: 1) == StoreLoss(seqs: 5...9, cause: .quota))
        #expect(book.statement(for: "a", index: 3) == nil)
        #expect(book.statement(for: "b", index: 0) == nil)
    }

    @Test func announcedStatementsAreCarriedUntilDeliveredOrDropped() {
        var book = LossStatementBook()
        book.add(StoreLoss(seqs: 1...3, cause: .damage), meter: "a")
        book.add(StoreLoss(seqs: 8...9, cause: .quota), meter: "a")
        book.announced(meter: "a", carriers: [20, 21])
        #expect(book.waiting["a"] == nil)
        #expect(book.carried["a"] == [20: StoreLoss(seqs: 1...3, cause: .damage), 21: StoreLoss(seqs: 8...9, cause: .quota)])
        // The waiting damage statement is found again from the mark; carried ones are kept.
        #expect(book.persistentRows(meter: "a").map(\.carrier) == [20, 21])
        book.dropped(21...22, meter: "a")
        #expect(book.waiting["a"] == [StoreLoss(seqs: 8...9, cause: .quota), StoreLoss(seqs: 21...22, cause: .quota)])
        book.forgetCarried { _, seq in seq == 20 }
        #expect(book.carried.isEmpty)
        let before = book
        book.dropped(23...23, meter: "a")
        #expect(book.waiting["a"]?.last == StoreLoss(seqs: 21...23, cause: .quota))
        #expect(book.meters(changedFrom: before) == ["a"])
    }
}
