import Crypto
import Foundation
import MeterCore
import Outbox
import MeterGateTesting
import TestSupport
import Testing

/// The high-water mark beside the database: a store that comes back behind what it had published (lost
/// commits, as after a cut WAL) continues each stream from the mark, so no seq is signed twice.
@Suite(.timeLimit(.minutes(5))) struct HighWaterMarkTests {
    /// A chained record that also writes down the `storeLost` its position carried.
    func recordNoting(_ meter: String) -> RecordBuilder {
        { position in
            let lost = position.storeLost.map { "\($0.seqs.lowerBound)-\($0.seqs.upperBound)" } ?? "none"
            return try chainedRecord(meter, payload: "lost=\(lost)")(position)
        }
    }

    func append(_ store: SQLiteOutbox, _ meter: String, count: Int, firstEnd: Int64) async throws -> [OutboxRecord] {
        try await store.append((0..<count).map { i in
            AppendRequest(meter: meter, intervalEnd: firstEnd + Int64(i) * 1000, build: recordNoting(meter))
        })
    }

    /// Copies the database file (a closed store: its WAL is checkpointed and empty) to `copy`.
    func setAside(_ path: String, to copy: String) throws {
        try FileManager.default.copyItem(atPath: path, toPath: copy)
    }

    /// The text of the mark's slot files that exist (`<path>.mark-a`, `<path>.mark-b`), in that order.
    func markSlots(_ path: String) -> [String] {
        ["a", "b"].compactMap { try? String(contentsOfFile: "\(path).mark-\($0)", encoding: .utf8) }
    }

    /// Removes the database file and its WAL and shared-memory files (not the mark).
    func removeDatabase(_ path: String) throws {
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.removeItem(atPath: path + suffix)
        }
    }

    /// Puts the older database back, as a database that lost its later commits, keeping the newer mark.
    func restore(_ copy: String, to path: String) throws {
        try removeDatabase(path)
        try FileManager.default.copyItem(atPath: copy, toPath: path)
    }

    /// A store at `path` whose meter `m` has `count` records, all handed out for publishing; returns its epoch.
    func publishedStore(at path: String, count: Int) async throws -> String {
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        _ = try await append(store, "m", count: count, firstEnd: 1000)
        #expect(try await store.claimPending(limit: 100).count == count)
        await store.close()
        return store.epoch
    }

    @Test func aStoreBehindItsMarkContinuesFromTheMarkAndNoSeqIsReused() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite"), old = dir.file("old.sqlite")
        let first = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        _ = try await append(first, "m", count: 3, firstEnd: 1000)
        _ = try await append(first, "n", count: 2, firstEnd: 1000)
        let delivered = try await first.claimPending(limit: 100)
        #expect(delivered.count == 5)
        #expect(try await first.markDelivered(delivered.map(\.id), at: Date()) == 5)
        await first.close()
        try setAside(path, to: old)

        // More records, handed out for publishing (the mark rises), then one more that never left.
        let second = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(second.openReport.recoveries.isEmpty)
        _ = try await append(second, "m", count: 4, firstEnd: 4000)
        let published = try await second.claimPending(limit: 100)
        #expect(published.map(\.seq) == [4, 5, 6, 7])
        let unpublished = try await append(second, "m", count: 1, firstEnd: 8000)
        #expect(unpublished.map(\.seq) == [8])
        await second.close()

        // The database loses the commits after the copy; the mark outside it does not.
        try restore(old, to: path)
        let third = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(third.epoch == second.epoch)
        #expect(third.openReport.recoveries == [OutboxRecovery(meter: "m", storedSeq: 3, markSeq: 7, intervalEnd: 7000)],
                "n lost nothing that was published; m lost 4…7")
        let stats = try await third.stats()
        #expect(stats.recoveredStreams == 1)
        #expect(stats.streams.first { $0.meter == "m" }?.lastSeq == 7)
        #expect(try await third.records(meter: "m", seqs: 4...7, limit: 10).isEmpty, "a replay finds them gone, as if pruned")

        let next = try await append(third, "m", count: 2, firstEnd: 8000)
        #expect(next.map(\.seq) == [8, 9], "seq 8 is new: the unpublished record 8 was lost with the database")
        expectChain(next, firstSeq: 8, previousHash: published[3].hash)
        #expect(String(decoding: next[0].bytes, as: UTF8.self).hasSuffix("lost=4-7"), "the first record after the loss says so")
        #expect(String(decoding: next[1].bytes, as: UTF8.self).hasSuffix("lost=none"))
        let n = try await append(third, "n", count: 1, firstEnd: 3000)
        expectChain(n, firstSeq: 3, previousHash: try await third.records(meter: "n", seqs: 2...2, limit: 1)[0].hash)
        await third.close()

        let fourth = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(fourth.openReport.recoveries.isEmpty, "once the stream has moved on, nothing is behind the mark")
        #expect(try await fourth.stats().recoveredStreams == 0)
    }

    @Test func aRestartBeforeTheNextAppendFindsTheSameLossAgain() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite"), old = dir.file("old.sqlite")
        _ = try await publishedStore(at: path, count: 1)
        try setAside(path, to: old)
        let second = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        _ = try await append(second, "m", count: 2, firstEnd: 2000)
        _ = try await second.claimPending(limit: 10)
        await second.close()
        try restore(old, to: path)

        let expected = [OutboxRecovery(meter: "m", storedSeq: 1, markSeq: 3, intervalEnd: 3000)]
        let third = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(third.openReport.recoveries == expected)
        _ = try await third.append([], saving: ["state": [1]])   // state alone: the stream has not moved on
        await third.close()
        let fourth = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(fourth.openReport.recoveries == expected)
        let next = try await append(fourth, "m", count: 1, firstEnd: 4000)
        #expect(next.map(\.seq) == [4])
        #expect(String(decoding: next[0].bytes, as: UTF8.self).hasSuffix("lost=2-3"))
    }

    /// Ways a mark file can be damaged.
    enum Damage: String, CaseIterable, Sendable {
        case junk, flippedValue, otherVersion

        func apply(_ text: String) -> String {
            switch self {
            case .junk: return "this is not a mark\n"
            case .flippedValue: return text.replacingOccurrences(of: "\"seq\":2", with: "\"seq\":1")
            case .otherVersion:
                // A well-formed file of a version this build does not read.
                let json = String(text.split(separator: "\n")[0]).replacingOccurrences(of: "\"version\":1", with: "\"version\":2")
                return json + "\nsha256 " + SHA256.hash(data: Array(json.utf8)).map { String(format: "%02x", $0) }.joined() + "\n"
            }
        }
    }

    @Test(arguments: Damage.allCases)
    func aDamagedMarkRefusesToOpenNamingTheFile(damage: Damage) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        _ = try await publishedStore(at: path, count: 2)
        // One claim: generation 1, in slot b.
        let markPath = path + ".mark-b"
        #expect(!FileManager.default.fileExists(atPath: path + ".mark-a"))
        let text = try String(contentsOfFile: markPath, encoding: .utf8)
        try damage.apply(text).write(toFile: markPath, atomically: true, encoding: .utf8)

        do {
            _ = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
            Issue.record("a damaged mark (\(damage)) was accepted")
        } catch {
            guard case .markFileDamaged(let named, _) = error else {
                Issue.record("expected markFileDamaged, got \(error)")
                return
            }
            #expect(named.contains(markPath))
            #expect(error.description.contains(markPath) && error.description.contains("remove"))
        }
        // Inspection beside a gateway does not need the mark.
        let inspect = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration(), options: .init(inspectOnly: true))
        #expect(try await inspect.stats().streams.first?.lastSeq == 2)
    }

    /// A crash while a slot is rewritten leaves it torn: its records never left, and the other slot holds
    /// the mark in force.
    @Test func aTornNewerSlotFallsBackToTheOlderSlot() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite"), old = dir.file("old.sqlite")
        _ = try await publishedStore(at: path, count: 2)   // generation 1 (slot b): seq 2
        try setAside(path, to: old)
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        _ = try await append(store, "m", count: 3, firstEnd: 3000)
        #expect(try await store.claimPending(limit: 10).map(\.seq) == [1, 2, 3, 4, 5])   // generation 2 (slot a): seq 5
        await store.close()
        let slotA = path + ".mark-a"
        let text = try String(contentsOfFile: slotA, encoding: .utf8)
        try String(text.prefix(text.count / 2)).write(toFile: slotA, atomically: false, encoding: .utf8)
        try restore(old, to: path)

        let reopened = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(reopened.openReport.recoveries.isEmpty, "slot b (seq 2) is in force, and the database holds seq 2")
        #expect(try await append(reopened, "m", count: 1, firstEnd: 3000).map(\.seq) == [3])
    }

    /// An existing store opened with a mark of another epoch (another store's file put in its place):
    /// the mark is not applied, and the next update outranks it.
    @Test func aMarkOfAnotherEpochBesideAnExistingStoreIsNotApplied() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite"), other = dir.file("other.sqlite")
        _ = try await publishedStore(at: other, count: 5)
        _ = try await publishedStore(at: path, count: 2)
        try FileManager.default.removeItem(atPath: path + ".mark-b")
        try FileManager.default.copyItem(atPath: other + ".mark-b", toPath: path + ".mark-b")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(store.openReport.recoveries.isEmpty)
        #expect(try await append(store, "m", count: 1, firstEnd: 3000).map(\.seq) == [3])
        #expect(try await store.claimPending(limit: 10).map(\.seq) == [1, 2, 3])
        await store.close()
        let reopened = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(reopened.openReport.recoveries.isEmpty)
        #expect(markSlots(path).contains { $0.contains(reopened.epoch) && $0.contains("\"seq\":3") })
    }

    @Test func aMarkOfAnotherEpochIsReplacedNotApplied() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let oldEpoch = try await publishedStore(at: path, count: 5)
        try removeDatabase(path)

        let fresh = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(fresh.openReport.created)
        #expect(fresh.epoch != oldEpoch)
        #expect(fresh.openReport.recoveries.isEmpty, "the old epoch's seqs belong to another chain")
        let first = try await append(fresh, "m", count: 1, firstEnd: 9000)
        #expect(first.map(\.seq) == [1])
        _ = try await fresh.claimPending(limit: 10)
        let slots = markSlots(path)
        #expect(slots.count == 1 && slots[0].contains(fresh.epoch), "the old store's mark went with it")
        let reopened = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(reopened.openReport.recoveries.isEmpty)
        #expect(try await append(reopened, "m", count: 1, firstEnd: 10000).map(\.seq) == [2])
    }

    @Test func theMarkRisesOnlyWhenAClaimHandsOutAHigherSeq() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        _ = try await append(store, "m", count: 2, firstEnd: 1000)
        #expect(markSlots(path).isEmpty, "nothing has left the store yet")
        let claimed = try await store.claimPending(limit: 10)
        let text = try #require(markSlots(path).first)
        #expect(text.contains("\"seq\":2") && text.contains("\"intervalEnd\":2000"))
        // Released and claimed again (a reconnect): the same seqs, the mark stays as it is.
        try await store.releaseInflight(claimed.map(\.id))
        try FileManager.default.removeItem(atPath: path + ".mark-b")
        #expect(try await store.claimPending(limit: 10).count == 2)
        #expect(markSlots(path).isEmpty, "no rewrite for seqs already covered")
        _ = try await append(store, "m", count: 1, firstEnd: 3000)
        #expect(try await store.claimPending(limit: 10).map(\.seq) == [3])
        #expect(markSlots(path).count == 1 && markSlots(path)[0].contains("\"generation\":2"), "the next update goes to the other slot")
    }

    /// The publisher's commit-and-refill writes the mark as a claim does, before the records leave.
    @Test func deliveringAndClaimingInOneCallRaisesTheMark() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        _ = try await append(store, "m", count: 3, firstEnd: 1000)
        let first = try await store.claimPending(limit: 1)
        let outcome = try await store.markDelivered(first.map(\.id), at: Date(), thenClaim: 10)
        #expect(outcome.delivered == 1)
        #expect(try outcome.claimed.get().map(\.seq) == [2, 3])
        #expect(markSlots(path).count == 2 && markSlots(path).contains { $0.contains("\"generation\":2") && $0.contains("\"seq\":3") && $0.contains("\"intervalEnd\":3000") })
    }

    /// A slot's first write that fails (here: its temporary file cannot be made) leaves no slot behind, so the
    /// store opens again; an empty slot left by an earlier version's failed first write (a full disk) is ignored.
    @Test func aFailedFirstMarkWriteLeavesNothingThatStopsTheNextStart() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        _ = try await append(store, "m", count: 2, firstEnd: 1000)
        try FileManager.default.createDirectory(atPath: path + ".mark-b.new", withIntermediateDirectories: false)
        await #expect(throws: OutboxError.self) { try await store.claimPending(limit: 10) }
        #expect(!FileManager.default.fileExists(atPath: path + ".mark-b"), "a half-made slot was left")
        await store.close()
        try FileManager.default.removeItem(atPath: path + ".mark-b.new")

        _ = FileManager.default.createFile(atPath: path + ".mark-a", contents: Data())
        let reopened = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(reopened.openReport.recoveries.isEmpty)
        #expect(try await reopened.claimPending(limit: 10).map(\.seq) == [1, 2])
        #expect(markSlots(path).contains { $0.contains("\"seq\":2") }, "the mark was written after all")
        await reopened.close()
    }
}
