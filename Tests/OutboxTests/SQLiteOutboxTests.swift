import Crypto
import Foundation
import Outbox
import SQLite
import MeterGateTesting
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct SQLiteOutboxTests {
    @Test func theStoreSurvivesReopeningWithItsEpochSeqsAndChain() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let first = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(first.openReport.created)
        #expect(first.epoch.count == 32)
        for _ in 0..<3 { _ = try await first.append(meter: "m", chainedRecord("m")) }
        let claimed = try await first.claimPending(limit: 2)
        #expect(claimed.count == 2)
        await first.close()
        // The file is in WAL mode for any connection.
        let peek = try SQLiteDatabase(path: path, readOnly: true)
        #expect(try peek.scalarText("PRAGMA journal_mode") == "wal")
        // A claim writes no row: inflight lives in the process that claimed.
        #expect(try peek.scalarInt("SELECT count(*) FROM pending WHERE sink = 'mqtt'") == 3)

        let second = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        #expect(!second.openReport.created)
        #expect(second.epoch == first.epoch)
        #expect(second.openReport.inflightReset == 0)
        _ = try await second.append(meter: "m", chainedRecord("m"))
        let all = try await second.records(meter: "m", seqs: 1...10, limit: 10)
        #expect(all.map(\.state) == [.pending, .pending, .pending, .pending])
        expectChain(all)

        let other = TemporaryDirectory()
        defer { other.cleanup() }
        let fresh = try await SQLiteOutbox.open(path: other.file("outbox.sqlite"), configuration: OutboxConfiguration())
        #expect(fresh.epoch != first.epoch, "a new store gets a new epoch")
    }

    @Test func aFileThatIsNotADatabaseIsMovedAsideNotDeleted() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let junk = String(repeating: "this is not a database ", count: 400)
        let path = dir.write("outbox.sqlite", junk)
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        let moved = try #require(store.openReport.quarantined)
        #expect(moved.movedTo.hasPrefix(path + ".damaged-"))
        #expect(try String(contentsOfFile: moved.movedTo, encoding: .utf8) == junk)
        #expect(store.openReport.created)
        let record = try await store.append(meter: "m", chainedRecord("m"))
        #expect(record.seq == 1)
    }

    @Test func aDamagedPageFailsTheIntegrityCheckAndTheFileIsMovedAside() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        for _ in 0..<50 {
            _ = try await store.append((0..<20).map { _ in AppendRequest(meter: "m", build: chainedRecord("m", payload: String(repeating: "z", count: 200))) })
        }
        await store.close()
        // Overwrite the middle of the file (b-tree pages of records) with garbage.
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size / 2 / 4096 * 4096)
        handle.write(Data(repeating: 0xA5, count: 8192))
        try handle.close()

        let reopened = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        let moved = try #require(reopened.openReport.quarantined)
        #expect(!moved.reason.isEmpty)
        #expect(FileManager.default.fileExists(atPath: moved.movedTo))
        #expect(try await reopened.stats().totalRecords == 0)
    }

    /// A value that changed inside a structurally sound file (a flipped bit on a bad SD card) is found at
    /// start too: an unsent record that no longer matches its hash, or a chain head that is not its last
    /// record's hash, moves the store aside rather than publishing a changed record or chaining onto it.
    @Test(arguments: ["UPDATE records SET bytes = CAST(upper(CAST(bytes AS TEXT)) AS BLOB) WHERE seq = 2",
                      "DELETE FROM pending WHERE record_id = 1; UPDATE records SET bytes = CAST(upper(CAST(bytes AS TEXT)) AS BLOB) WHERE seq = 1",
                      "UPDATE records SET hash = zeroblob(32) WHERE seq = 3",
                      "UPDATE streams SET last_hash = zeroblob(32)"])
    func aChangedValueIsFoundAtStartAndTheStoreMovedAside(damage: String) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        for _ in 0..<3 { _ = try await store.append(meter: "m", chainedRecord("m", payload: "abc")) }
        await store.close()
        do {
            let raw = try SQLiteDatabase(path: path)
            try raw.execute(damage)
            #expect(raw.changes >= 1)
        }
        let reopened = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        let moved = try #require(reopened.openReport.quarantined)
        #expect(moved.reason.contains("stream m:"), "\(moved.reason)")
        #expect(FileManager.default.fileExists(atPath: moved.movedTo))
    }

    @Test func aRecordThatReusesTheIdOfARemovedRowIsStillHandedOut() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let clock = TestClock()
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration(retention: .seconds(60)), clock: clock.function)
        for _ in 0..<3 { _ = try await store.append(meter: "m", chainedRecord("m")) }
        let first = try await store.claimPending(limit: 10)
        #expect(try await store.markDelivered(first.map(\.id), at: clock.now) == 3)
        clock.advance(120)
        #expect(try await store.maintain(now: clock.now).expired == 3)
        // The table is empty: SQLite gives the next row id 1 again, below the ids already handed out.
        let next = try await store.append(meter: "m", chainedRecord("m"))
        #expect(next.id <= first.last!.id)
        let claimed = try await store.claimPending(limit: 10)
        #expect(claimed.map(\.seq) == [4])
        #expect(try await store.markDelivered(claimed.map(\.id), at: clock.now) == 1)
        let stats = try await store.stats()
        #expect(stats.pending == 0)
        // The file size the monitor reports: the database and its WAL.
        let onDisk = [path, path + "-wal"].map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int64) ?? 0 }
        #expect(onDisk[0] > 0 && onDisk[1] > 0)
        #expect(stats.fileBytes == onDisk[0] + onDisk[1])
    }

    @Test func diskFullRefusesAppendsWithoutDamageAndAppendsResumeWhenSpaceIsFreed() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration(retention: .zero),
                                                options: .init(maxPageCount: 64))
        let payload = String(repeating: "f", count: 1000)
        var appended = 0
        var fullError: OutboxError?
        while fullError == nil && appended < 10_000 {
            do {
                _ = try await store.append(meter: "m", chainedRecord("m", payload: payload))
                appended += 1
            } catch {
                fullError = error
            }
        }
        guard case .storageFull(let sqlite) = fullError else { Issue.record("expected storageFull, got \(String(describing: fullError))"); return }
        #expect(sqlite.isFull)
        #expect(appended > 50)
        // Nothing half-written: every committed record is there, in one unbroken chain.
        let stored = try await store.records(meter: "m", seqs: 1...100_000, limit: 100_000)
        #expect(stored.count == appended)
        expectChain(stored)
        // Still full: refused again, the seq is not consumed.
        await #expect(throws: OutboxError.self) { _ = try await store.append(meter: "m", chainedRecord("m", payload: payload)) }
        // Deliver and expire half: the freed pages take new records.
        let claimed = try await store.claimPending(limit: appended / 2)
        try await store.markDelivered(claimed.map(\.id), at: Date(timeIntervalSinceNow: -10))
        let report = try await store.maintain(now: Date())
        #expect(report.expired == Int64(claimed.count))
        let resumed = try await store.append(meter: "m", chainedRecord("m", payload: payload))
        #expect(resumed.seq == UInt64(appended) + 1)
        let tail = try await store.records(meter: "m", seqs: UInt64(appended)...UInt64(appended + 1), limit: 2)
        expectChain(tail, firstSeq: UInt64(appended), previousHash: prevOf([tail[0]])[0])
        await store.close()
        let check = try SQLiteDatabase(path: path)
        #expect(try check.scalarText("PRAGMA integrity_check") == "ok")
    }

    @Test func appendsCommitWithSynchronousFullInWALModeAfterEveryKindOfTransaction() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        #expect(try await store.durability() == ("wal", 2))
        _ = try await store.append(meter: "m", chainedRecord("m"))
        let claimed = try await store.claimPending(limit: 1)
        #expect(try await store.durability() == ("wal", 2), "a relaxed state change restores FULL for the next append")
        try await store.markDelivered(claimed.map(\.id), at: Date())
        try await store.releaseInflight([])
        #expect(try await store.durability() == ("wal", 2))
    }

    @Test func exportedRecordsAreTheStoredBytes() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        let appended = try await store.append((0..<5).map { _ in AppendRequest(meter: "m", build: chainedRecord("m")) })
        let read = try await store.records(meter: "m", seqs: 2...4, limit: 10)
        #expect(read.map(\.bytes) == appended[1...3].map(\.bytes))
        #expect(read.map(\.hash) == appended[1...3].map(\.hash))
    }
}
