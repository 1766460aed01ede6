import Foundation
import Ledger
import MeterCore
import Signing
import Testing
import TestSupport

@Suite(.timeLimit(.minutes(5))) struct LedgerStoreTests {
    let key = SigningKey.generate(.eddsa)

    func flat() throws -> Tariff { try TariffFile.parse("currency: EUR\nprecision: 4\nflat: 31.25\n", file: "flat.yaml") }

    @Test func aDuplicateChangesNothingAndAForkIsKeptAside() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        var stream = try SignedStream(key: key)
        try stream.next(3)
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"), tariff: try flat())
        for r in stream.records {
            #expect(try await store.add(try verified(r, key: key), envelope: r.bytes, receivedMillis: 1) == .stored(chainProblems: []))
        }
        let before = try await store.rows()
        #expect(try await store.add(try verified(stream.records[1], key: key), envelope: stream.records[1].bytes, receivedMillis: 2) == .duplicate)
        let fork = try stream.fork(of: 2)
        #expect(try await store.add(try verified(fork, key: key), envelope: fork.bytes, receivedMillis: 3) == .fork(storedHash: stream.records[1].hash))
        // The same fork delivered again is recorded once.
        _ = try await store.add(try verified(fork, key: key), envelope: fork.bytes, receivedMillis: 4)
        #expect(try await store.rows() == before)
        let forks = try await store.forks()
        #expect(forks.count == 1 && forks[0].seq == 2 && forks[0].storedHash == stream.records[1].hash && forks[0].otherHash == fork.hash)
        let counts = try await store.counts()
        #expect(counts.readings == 3 && counts.forks == 1 && counts.chainBreaks == 0)
    }

    @Test func rowsCarryEnergyAndTheExactAmount() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        var stream = try SignedStream(key: key, start: "2026-03-29T01:00:00Z")
        try stream.next(delta: 250_000)
        try stream.next(delta: 1_234_567)
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"), tariff: try flat())
        for r in stream.records { _ = try await store.add(try verified(r, key: key), envelope: r.bytes, receivedMillis: 1) }
        let rows = try await store.rows()
        #expect(rows.map(\.importMilliwattHours) == [250_000, 1_234_567])
        #expect(rows.map { $0.amount.formatted(fractionDigits: 4) } == ["7.8125", "38.5802"])   // 1.234567 kWh × 31.25 = 38.58021875
        #expect(rows[0].startMillis == millis("2026-03-29T01:00:00Z") && rows[0].endMillis == millis("2026-03-29T01:15:00Z"))
        #expect(rows.allSatisfy { $0.tariff == "flat" && $0.currency == "EUR" && $0.quality == "measured" && $0.gateway == "gw-1" })
        // --from/--to select by interval start, [from, to).
        let second = try await store.rows(fromMillis: millis("2026-03-29T01:15:00Z"), toMillis: millis("2026-03-29T01:30:00Z"))
        #expect(second.map(\.seq) == [2])
    }

    @Test func gapsSurviveAReopenAndABrokenLinkIsRecorded() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        var stream = try SignedStream(key: key)
        try stream.next(6)
        do {
            let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
            for i in [1, 2, 5] { _ = try await store.add(try verified(stream.records[i], key: key), envelope: stream.records[i].bytes, receivedMillis: 1) }
            #expect(await store.gaps(of: stream.records[0].record.stream) == [1...1, 4...5])
        }
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
        let s = stream.records[0].record.stream
        #expect(await store.gaps(of: s) == [1...1, 4...5])
        #expect(await store.gaps(of: s, fromFirstSeq: false) == [4...5])
        // A record signed by the right key but chained to something else breaks the link to seq 3.
        var other = try SignedStream(key: key)
        for _ in 0..<4 { try other.next(delta: 111_000) }     // other energy, so other hashes
        let stranger = other.records[3]                    // seq 4 with another prev
        #expect(stranger.record.prev != stream.records[2].hash)
        let outcome = try await store.add(try verified(stranger, key: key), envelope: stranger.bytes, receivedMillis: 2)
        #expect(outcome == .stored(chainProblems: ["seq 4: prev does not match the hash of seq 3"]))
        #expect(try await store.counts().chainBreaks == 1)
        #expect(await store.gaps(of: s) == [1...1, 5...5])
    }

    @Test func ocmfRecordsAreStoredAndDeduplicatedLikeJWS() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let p256 = SigningKey.generate(.es256)
        var stream = try SignedStream(key: p256, meter: "wallbox", envelope: .ocmf)
        try stream.next(3)
        #expect(stream.records.allSatisfy { $0.text.hasPrefix("OCMF|") })
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"), tariff: try flat())
        for r in stream.records + [stream.records[0]] { _ = try await store.add(try verified(r, key: p256), envelope: r.bytes, receivedMillis: 1) }
        let rows = try await store.rows()
        #expect(rows.map(\.seq) == [1, 2, 3] && rows.allSatisfy { $0.meter == "wallbox" && $0.importMilliwattHours == 250_000 })
        #expect(try await store.counts().chainBreaks == 0)
    }

    @Test func unverifiablePayloadsAreKeptWithTheReason() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
        try await store.reject(topic: "metergate/v1/gw-1/main/reading", payload: Array("garbage".utf8), reason: "malformed: x", receivedMillis: 1)
        #expect(try await store.counts().rejected == 1)
    }

    @Test func exportsOpenReadOnlyAndRefuseAFileThatHoldsNoLedger() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let other = dir.file("other.db")
        _ = try runProcess("/usr/bin/env", ["python3", "-c", "import sqlite3; c = sqlite3.connect('\(other)'); c.execute('create table outbox(x)'); c.commit()"])
        let before = try Data(contentsOf: URL(fileURLWithPath: other))
        do {
            _ = try await SQLiteLedgerStore.open(path: other, readOnly: true)
            Issue.record("read a file without a ledger")
        } catch {
            #expect("\(error)".contains("holds no ledger"), "\(error)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: other)) == before)
        // A real ledger reads back read-only.
        var stream = try SignedStream(key: key)
        try stream.next(2)
        do {
            let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
            for r in stream.records { _ = try await store.add(try verified(r, key: key), envelope: r.bytes, receivedMillis: 1) }
        }
        let reader = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"), readOnly: true)
        #expect(try await reader.rows().map(\.seq) == [1, 2])
    }

    @Test func aFileThatIsNotADatabaseIsAClearError() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.write("not.db", String(repeating: "not a database\n", count: 100))
        do {
            _ = try await SQLiteLedgerStore.open(path: path)
            Issue.record("opened a text file as a ledger")
        } catch {
            #expect("\(error)".contains("ledger database"))
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("not a database"))   // left as it was
    }
}
