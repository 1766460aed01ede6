import Delivery
import Foundation
import MQTT
import MeterCore
import Signing
import TestSupport
import Testing
@testable import Ledger

/// Seqs a gateway states, signed, that its store lost (`store_lost`) can never be replayed: the ledger
/// keeps the statement and stops asking for them.
@Suite(.timeLimit(.minutes(5))) struct StatedLostTests {
    let key = SigningKey.generate(.eddsa)
    let policy = ReplayPolicy(settleDelay: .seconds(1), retryInterval: .seconds(10), minimumSpacing: .milliseconds(200), maximumRange: 100)

    /// Seqs 1…10 published, the store lost `lost`, the next record (seq 11) states it, then seq 12.
    func recovered(lost: ClosedRange<UInt64>) throws -> SignedStream {
        var stream = try SignedStream(key: key)
        try stream.next(10)
        stream.position.storeLost = StoreLoss(seqs: lost, cause: .damage)
        try stream.next()
        try stream.next()
        return stream
    }

    func add(_ store: SQLiteLedgerStore, _ stream: SignedStream, seqs: [UInt64]) async throws {
        for seq in seqs {
            let r = stream.records[Int(seq - 1)]
            _ = try await store.add(try verified(r, key: key), envelope: r.bytes, receivedMillis: 1)
        }
    }

    @Test func theSchedulerStopsAskingForStatedSeqs() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let stream = try recovered(lost: 6...10)
        let s = stream.records[0].record.stream
        var scheduler = ReplayScheduler(policy: policy)
        do {
            let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
            // Before the statement arrives, 6…10 is an ordinary gap and is asked for.
            try await add(store, stream, seqs: [1, 2, 3, 4, 5, 12])
            scheduler.update(stream: s, gaps: await store.gaps(of: s), now: .zero)
            let asked = scheduler.next(now: .seconds(1))
            #expect(asked?.request.seqs == 6...11)
            // Seq 11 states that the store lost 6…10: nothing is left to ask for.
            try await add(store, stream, seqs: [11])
            #expect(await store.gaps(of: s).isEmpty)
            scheduler.update(stream: s, gaps: await store.gaps(of: s), now: .seconds(2))
            for second in [11, 30, 100] {
                let again = scheduler.next(now: .seconds(second))
                #expect(again == nil, "asked again at \(second) s for \(String(describing: again))")
            }
            #expect(scheduler.openGaps.isEmpty)
            #expect(await store.statedLostSeqs() == [s: [6...10]])
            #expect(try await store.counts().chainBreaks == 0)
        }
        // The statement survives a reopen: a restarted ledger does not ask again either.
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
        #expect(await store.gaps(of: s).isEmpty)
        #expect(await store.statedLostSeqs() == [s: [6...10]])
        // A stated seq that arrives after all (published before the loss) is stored as any other.
        try await add(store, stream, seqs: [7])
        #expect(await store.statedLostSeqs() == [s: [6...6, 8...10]])
        #expect(try await store.rows().count == 8)
    }

    @Test func seqsNoStatementCoversAreStillAskedFor() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let stream = try recovered(lost: 8...10)
        let s = stream.records[0].record.stream
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
        try await add(store, stream, seqs: [1, 2, 4, 5, 11, 12])
        #expect(await store.gaps(of: s) == [3...3, 6...7])
        var scheduler = ReplayScheduler(policy: policy)
        scheduler.update(stream: s, gaps: await store.gaps(of: s), now: .zero)
        let first = scheduler.next(now: .seconds(1))
        let second = scheduler.next(now: .seconds(2))
        #expect([first?.request.seqs, second?.request.seqs] == [3...3, 6...7])
    }

    @Test func aStatementWhoseRecordDoesNotLinkIsNotKept() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        var stream = try SignedStream(key: key)
        try stream.next(10)
        stream.position.prev = stream.records[8].hash      // not the hash of seq 10
        stream.position.storeLost = StoreLoss(seqs: 6...9, cause: .damage)
        try stream.next()
        let s = stream.records[0].record.stream
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
        try await add(store, stream, seqs: [1, 2, 3, 4, 5, 10, 11])
        #expect(await store.gaps(of: s) == [6...9])
        #expect(await store.statedLostSeqs().isEmpty)
        #expect(try await store.counts().chainBreaks == 1)
    }

    @Test func rangesJoinAndMissingPartsAreFound() {
        var set = SeqSet([3, 4, 9])
        set.insert(6...7)
        #expect(set.ranges == [3...4, 6...7, 9...9])
        set.insert(5...8)
        #expect(set.ranges == [3...9])
        set.insert(1...1)
        set.insert(12...20)
        #expect(set.ranges == [1...1, 3...9, 12...20])
        set.insert(0...25)
        #expect(set.ranges == [0...25])
        let holes = SeqSet([2, 5, 6, 10])
        #expect(holes.missing(in: 1...12) == [1...1, 3...4, 7...9, 11...12])
        #expect(holes.missing(in: 5...6).isEmpty)
        #expect(holes.missing(in: 6...8) == [7...8])
        #expect(holes.gaps(excluding: SeqSet([3, 4, 8])) == [1...1, 7...7, 9...9])
    }

    @Test func rangeInsertionAgreesWithASet() {
        var generator = SplitMix64(seed: 7)
        for _ in 0..<50 {
            var set = SeqSet()
            var reference = Set<UInt64>()
            for _ in 0..<30 {
                let lower = generator.next() % 100
                let upper = lower + generator.next() % 6
                set.insert(lower...upper)
                reference.formUnion(lower...upper)
            }
            #expect(set.ranges.flatMap { Array($0) } == reference.sorted())
            for (a, b) in zip(set.ranges, set.ranges.dropFirst()) { #expect(a.upperBound + 1 < b.lowerBound) }
            let probe = (generator.next() % 50)...(50 + generator.next() % 60)
            #expect(set.missing(in: probe).flatMap { Array($0) } == probe.filter { !reference.contains($0) })
        }
    }
}
