import MeterCore
import Crypto
import Foundation
import Synchronization
import Outbox
import MeterGateTesting
import TestSupport
import Testing

/// Appends ten records, alternately to meters "a" and "b", and claims the first four.
func claimFourOfTen(_ store: any OutboxStore) async throws -> [OutboxRecord] {
    for i in 0..<10 { _ = try await store.append(meter: i % 2 == 0 ? "a" : "b", chainedRecord(i % 2 == 0 ? "a" : "b")) }
    return try await store.claimPending(limit: 4)
}

/// The two implementations behind ``OutboxStore``: every logic test runs against both.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, memory
    var testDescription: String { rawValue }

    func make(_ dir: TemporaryDirectory, _ configuration: OutboxConfiguration = OutboxConfiguration(),
              clock: @escaping @Sendable () -> Date = { Date() }) async throws -> any OutboxStore {
        switch self {
        case .sqlite: return try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: configuration, clock: clock)
        case .memory: return InMemoryOutbox(epoch: probeEpoch, configuration: configuration, clock: clock)
        }
    }
}

/// An epoch as long as the SQLite store's, so record sizes match across implementations.
let probeEpoch = "0123456789abcdef0123456789abcdef"

/// A clock the test moves by hand.
final class TestClock: Sendable {
    private let seconds = Mutex(1_800_000_000.0)
    var now: Date { Date(timeIntervalSince1970: seconds.withLock { $0 }) }
    func advance(_ s: Double) { seconds.withLock { $0 += s } }
    var function: @Sendable () -> Date { { self.now } }
}

/// A store of `kind` whose byte quota holds `records` records of about 1 KiB each (900 characters of `fill`, the
/// hash and the row overhead), and the builder of such records for `meter`.
func storeWithQuota(of records: Int64, _ policy: OutboxQuotaPolicy, kind: StoreKind, _ dir: TemporaryDirectory,
                    fill: String = "x") async throws -> (any OutboxStore, (String) -> RecordBuilder) {
    let payload = String(repeating: fill, count: 900)
    let probe = try chainedRecord("m", payload: payload)(StreamPosition(epoch: probeEpoch, seq: 10, prev: StreamPosition.zeroHash))
    let perRecord = Int64(probe.bytes.count + 32) + OutboxRecord.rowOverheadBytes
    let store = try await kind.make(dir, OutboxConfiguration(quotaBytes: perRecord * records + 100, quotaPolicy: policy))
    return (store, { chainedRecord($0, payload: payload) })
}

@Suite(.timeLimit(.minutes(5))) struct OutboxStoreTests {
    /// The first record signed by a new key names the key of the record before it (`prev_kid`): the store keeps
    /// each stream's last key id, across a reopen for the SQLite store.
    @Test(arguments: StoreKind.allCases)
    func theFirstRecordOfANewKeyIsHandedThePreviousKeyID(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let seen = Mutex<[String?]>([])
        func request(_ kid: String) -> AppendRequest {
            AppendRequest(meter: "m", keyID: kid) { position in
                seen.withLock { $0.append(position.previousKeyID) }
                return try chainedRecord("m")(position)
            }
        }
        var store = try await kind.make(dir)
        _ = try await store.append([request("old"), request("old")])
        if kind == .sqlite {
            await (store as! SQLiteOutbox).close()
            store = try await kind.make(dir)
        }
        _ = try await store.append([request("new"), request("new")])
        #expect(seen.withLock { $0 } == [nil, "old", "old", "new"])
    }

    @Test(arguments: StoreKind.allCases)
    func appendAllocatesContiguousSeqsPerMeterAndChainsPrev(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await kind.make(dir)
        for round in 0..<5 {
            _ = try await store.append([AppendRequest(meter: "m1", build: chainedRecord("m1")),
                                        AppendRequest(meter: "m2", build: chainedRecord("m2")),
                                        AppendRequest(meter: "m1", build: chainedRecord("m1", payload: "r\(round)"))])
        }
        let m1 = try await store.records(meter: "m1", seqs: 1...1000, limit: 1000)
        let m2 = try await store.records(meter: "m2", seqs: 1...1000, limit: 1000)
        #expect(m1.count == 10)
        #expect(m2.count == 5)
        expectChain(m1)
        expectChain(m2)
        #expect(m1.allSatisfy { $0.epoch == store.epoch && $0.state == .pending })
        let stats = try await store.stats()
        #expect(stats.pending == 15)
        #expect(stats.streams.map(\.meter) == ["m1", "m2"])
        #expect(stats.streams.map(\.lastSeq) == [10, 5])
    }

    @Test(arguments: StoreKind.allCases)
    func aFailingBuilderStoresNothingOfTheBatchAndUsesNoSeq(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await kind.make(dir)
        _ = try await store.append(meter: "m1", chainedRecord("m1"))
        struct SignerDown: Error {}
        let error = await #expect(throws: OutboxError.self) {
            _ = try await store.append([AppendRequest(meter: "m1", build: chainedRecord("m1")),
                                        AppendRequest(meter: "m1", build: { _ in throw SignerDown() })])
        }
        guard case .recordBuilderFailed(let meter, let seq, _) = error else { Issue.record("wrong error \(String(describing: error))"); return }
        #expect(meter == "m1" && seq == 3)
        #expect(error?.description.contains("m1 seq 3") == true)
        let badHash = await #expect(throws: OutboxError.self) {
            _ = try await store.append(meter: "m1") { _ in (Array("x".utf8), [1, 2, 3]) }
        }
        #expect(badHash?.description.contains("3-byte hash") == true)
        let next = try await store.append(meter: "m1", chainedRecord("m1"))
        #expect(next.seq == 2)
        expectChain(try await store.records(meter: "m1", seqs: 1...10, limit: 10))
    }

    /// The publisher's commit-and-refill: the acknowledged records become delivered and the next pending ones are
    /// claimed, as the two calls one after the other would.
    @Test(arguments: StoreKind.allCases)
    func deliveringAndClaimingInOneCallIsTheTwoCallsInTurn(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await kind.make(dir)
        let first = try await claimFourOfTen(store)
        let outcome = try await store.markDelivered(first.map(\.id) + [first[0].id, 999], at: Date(), thenClaim: 4)
        #expect(outcome.delivered == 4, "each inflight record once; unknown ids ignored")
        let second = try outcome.claimed.get()
        #expect(second.map(\.seq) == [3, 3, 4, 4])
        #expect(second.allSatisfy { $0.state == .inflight })
        var stats = try await store.stats()
        #expect((stats.pending, stats.inflight, stats.delivered) == (2, 4, 4))
        #expect(stats.deliveredBytes == first.reduce(0) { $0 + $1.quotaBytes })
        // Nothing acknowledged, or nothing left to claim.
        #expect(try await store.markDelivered([], at: Date(), thenClaim: 10).claimed.get().map(\.seq) == [5, 5])
        let last = try await store.markDelivered(second.map(\.id), at: Date(), thenClaim: 10)
        #expect(last.delivered == 4)
        #expect(try last.claimed.get().isEmpty)
        stats = try await store.stats()
        #expect((stats.pending, stats.inflight, stats.delivered) == (0, 2, 8))
    }

    @Test(arguments: StoreKind.allCases)
    func recordsMoveFromPendingToInflightToDeliveredOldestFirst(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await kind.make(dir)
        let first = try await claimFourOfTen(store)
        #expect(first.map(\.id) == first.map(\.id).sorted())
        #expect(first.map(\.meter) == ["a", "b", "a", "b"])
        #expect(first.map(\.seq) == [1, 1, 2, 2])
        let second = try await store.claimPending(limit: 4)
        #expect(second.map(\.seq) == [3, 3, 4, 4])
        #expect(try await store.markDelivered(first.map(\.id), at: Date()) == 4)
        #expect(try await store.markDelivered(first.map(\.id), at: Date()) == 0, "delivered twice")
        #expect(try await store.releaseInflight(second.prefix(2).map(\.id)) == 2)
        var stats = try await store.stats()
        #expect((stats.pending, stats.inflight, stats.delivered) == (4, 2, 4))
        // Released records come back first: they are the oldest pending.
        let third = try await store.claimPending(limit: 3)
        #expect(third.map(\.id) == [second[0].id, second[1].id, third[2].id])
        #expect(third[2].seq == 5)
        #expect(try await store.releaseInflight([]) == 5)
        stats = try await store.stats()
        #expect((stats.pending, stats.inflight, stats.delivered) == (6, 0, 4))
    }

    @Test(arguments: StoreKind.allCases)
    func retentionRemovesOnlyOldDeliveredRecordsAndSeqsContinue(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let clock = TestClock()
        let store = try await kind.make(dir, OutboxConfiguration(retention: .seconds(3600)), clock: clock.function)
        for _ in 0..<6 { _ = try await store.append(meter: "m", chainedRecord("m")) }
        let claimed = try await store.claimPending(limit: 4)
        let hashOfSeq2 = claimed[1].hash
        try await store.markDelivered(Array(claimed.prefix(2).map(\.id)), at: clock.now)
        clock.advance(1800)
        try await store.markDelivered(Array(claimed.suffix(2).map(\.id)), at: clock.now)
        clock.advance(1801)
        let report = try await store.maintain(now: clock.now)
        #expect(report.expired == 2)
        #expect(report.prunedForQuota == 0)
        let left = try await store.records(meter: "m", seqs: 1...100, limit: 100)
        #expect(left.map(\.seq) == [3, 4, 5, 6])
        #expect(left.map(\.state) == [.delivered, .delivered, .pending, .pending])
        let next = try await store.append(meter: "m", chainedRecord("m"))
        #expect(next.seq == 7)
        expectChain(try await store.records(meter: "m", seqs: 3...7, limit: 10), firstSeq: 3, previousHash: hashOfSeq2)
    }

    @Test(arguments: StoreKind.allCases)
    func theQuotaPrunesDeliveredFirstThenKeepsUnsentAndRaisesTheAlarm(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        // Each record counts about 1 KiB (text, hash, row overhead): a quota of 20 records.
        let (store, record) = try await storeWithQuota(of: 20, .keep, kind: kind, dir)
        for _ in 0..<15 { _ = try await store.append(meter: "m", record("m")) }
        try await store.markDelivered(try await store.claimPending(limit: 10).map(\.id), at: Date())
        // 10 delivered + 15 more unsent = 25 > 20: the 5 oldest delivered go.
        for _ in 0..<10 { _ = try await store.append(meter: "m", record("m")) }
        var stats = try await store.stats()
        #expect(stats.delivered == 5)
        #expect(stats.pending == 15)
        #expect(stats.streams.first?.firstStoredSeq == 6)
        #expect(!stats.quotaAlarm)
        // 15 unsent + 10 more: every delivered record goes, then unsent alone exceed the quota: kept, alarm.
        for _ in 0..<10 { _ = try await store.append(meter: "m", record("m")) }
        stats = try await store.stats()
        #expect(stats.delivered == 0)
        #expect(stats.pending == 25)
        #expect(stats.quotaAlarm)
        #expect(stats.droppedTotal == 0)
        let report = try await store.maintain(now: Date())
        #expect(report.quotaAlarm && report.dropped.isEmpty)
        let stored = try await store.records(meter: "m", seqs: 1...100, limit: 100)
        #expect(stored.map(\.seq) == Array(11...35))
        expectChain(stored, firstSeq: 11, previousHash: prevOf([stored[0]])[0])
    }

    @Test(arguments: StoreKind.allCases)
    func dropOldestDropsTheOldestPendingCountedAndReported(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let (store, record) = try await storeWithQuota(of: 10, .dropOldest, kind: kind, dir, fill: "y")
        for i in 0..<14 { _ = try await store.append(meter: i < 7 ? "a" : "b", record(i < 7 ? "a" : "b")) }
        let stats = try await store.stats()
        #expect(stats.pending == 10)
        #expect(stats.droppedTotal == 4)
        #expect(!stats.quotaAlarm)
        let a = try await store.records(meter: "a", seqs: 1...100, limit: 100)
        #expect(a.map(\.seq) == [5, 6, 7])
        let b = try await store.records(meter: "b", seqs: 1...100, limit: 100)
        #expect(b.map(\.seq) == [1, 2, 3, 4, 5, 6, 7])
    }

    @Test(arguments: StoreKind.allCases)
    func dropOldestSkipsInflightRecordsWhoseAcknowledgementMayStillCome(kind: StoreKind) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let (store, record) = try await storeWithQuota(of: 10, .dropOldest, kind: kind, dir, fill: "y")
        for _ in 0..<3 { _ = try await store.append(meter: "a", record("a")) }
        let inflight = try await store.claimPending(limit: 2)
        #expect(inflight.map(\.seq) == [1, 2])
        for _ in 0..<10 { _ = try await store.append(meter: "a", record("a")) }
        // 13 unsent against room for 10: the three oldest not inflight go (seq 3 to 5), seq 1 and 2 stay.
        let stats = try await store.stats()
        #expect(stats.droppedTotal == 3)
        #expect((stats.pending, stats.inflight) == (8, 2))
        let kept = try await store.records(meter: "a", seqs: 1...100, limit: 100)
        #expect(kept.map(\.seq) == [1, 2, 6, 7, 8, 9, 10, 11, 12, 13])
        #expect(try await store.markDelivered(inflight.map(\.id), at: Date()) == 2, "their PUBACKs still count")
        #expect(try await store.claimPending(limit: 100).map(\.seq) == [6, 7, 8, 9, 10, 11, 12, 13])
    }
}

/// The prev (hex in the record text) of each record.
func prevOf(_ records: [OutboxRecord]) -> [[UInt8]] {
    records.map { record in
        let hexText = String(String(decoding: record.bytes, as: UTF8.self).split(separator: "|", omittingEmptySubsequences: false)[3])
        var bytes: [UInt8] = []
        var index = hexText.startIndex
        while index < hexText.endIndex {
            let next = hexText.index(index, offsetBy: 2)
            bytes.append(UInt8(hexText[index..<next], radix: 16) ?? 0)
            index = next
        }
        return bytes
    }
}
