import Foundation
import Ledger
import LedgerPostgres
import MeterCore
import Signing
import Testing
import TestSupport

/// Where a contract test keeps its ledger: a SQLite file, or a fresh database on a real PostgreSQL server.
enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgres

    var testDescription: String { rawValue }

    /// A fresh, empty ledger; `opener` opens it again (as a second process, or after a restart).
    func fresh(tariff: Tariff = .none) async throws -> (store: any LedgerStorage, opener: @Sendable (Bool) async throws -> any LedgerStorage, cleanup: @Sendable () -> Void) {
        switch self {
        case .sqlite:
            let dir = TemporaryDirectory()
            let path = dir.file("ledger.db")
            let opener: @Sendable (Bool) async throws -> any LedgerStorage = { readOnly in try await SQLiteLedgerStore.open(path: path, tariff: tariff, readOnly: readOnly) }
            return (try await opener(false), opener, { dir.cleanup() })
        case .postgres:
            let server = try PostgresServer.shared()
            let url = try server.createDatabase()
            let location = try PostgresLocation(url: url, passwordFile: server.passwordFile)
            let opener: @Sendable (Bool) async throws -> any LedgerStorage = { readOnly in try await PostgresLedgerStore.open(location, tariff: tariff, readOnly: readOnly) }
            return (try await opener(false), opener, {})
        }
    }
}

/// The ledger's guarantees, checked against both stores: what the SQLite ledger promises, PostgreSQL keeps.
@Suite(.timeLimit(.minutes(5))) struct StorageContractTests {
    let key = SigningKey.generate(.eddsa)

    func flat() throws -> Tariff { try TariffFile.parse("currency: EUR\nprecision: 4\nflat: 31.25\n", file: "flat.yaml") }

    func add(_ store: any LedgerStorage, _ r: SignedRecord, at millis: Int64 = 1) async throws -> LedgerOutcome {
        try await store.add(try verified(r, key: key), envelope: r.bytes, receivedMillis: millis)
    }

    @Test(arguments: Backend.allCases) func aReadingIsStoredOnceAndAForkNeverOverwrites(_ backend: Backend) async throws {
        let (store, _, cleanup) = try await backend.fresh(tariff: try flat())
        defer { cleanup() }
        var stream = try SignedStream(key: key)
        try stream.next(3)
        for r in stream.records { #expect(try await add(store, r) == .stored(chainProblems: [])) }
        let before = try await store.rows()
        #expect(try await add(store, stream.records[1], at: 2) == .duplicate)
        let fork = try stream.fork(of: 2)
        #expect(try await add(store, fork, at: 3) == .fork(storedHash: stream.records[1].hash))
        _ = try await add(store, fork, at: 4)                                // the same fork again is kept once
        #expect(try await store.rows() == before)
        let forks = try await store.forks()
        #expect(forks == [LedgerFork(stream: stream.records[0].record.stream, seq: 2, storedHash: stream.records[1].hash, otherHash: fork.hash)])
        #expect(try await store.counts() == LedgerCounts(readings: 3, forks: 1, chainBreaks: 0, rejected: 0))
        await store.close()
    }

    /// A batch (one transaction, one round trip) stores exactly what its records stored one by one would: across
    /// streams, out of order, with a repeat and a fork inside the batch.
    @Test(arguments: Backend.allCases) func aBatchStoresWhatItsRecordsOneByOneWould(_ backend: Backend) async throws {
        let (store, _, cleanup) = try await backend.fresh()
        defer { cleanup() }
        var a = try SignedStream(key: key, meter: "a")
        try a.next(3)
        var b = try SignedStream(key: key, meter: "b")
        try b.next(2)
        let fork = try a.fork(of: 2)
        let batch = try [b.records[1], a.records[2], a.records[0], a.records[1], b.records[0], a.records[1], fork].map {
            LedgerEntry(try verified($0, key: key), envelope: $0.bytes, receivedMillis: 1)
        }
        let outcomes = try await store.add(batch)
        #expect(outcomes == [.stored(chainProblems: []), .stored(chainProblems: []), .stored(chainProblems: []), .stored(chainProblems: []),
                             .stored(chainProblems: []), .duplicate, .fork(storedHash: a.records[1].hash)])
        #expect(try await store.counts() == LedgerCounts(readings: 5, forks: 1, chainBreaks: 0, rejected: 0))
        let gaps = try await store.gaps(of: [a.records[0].record.stream, b.records[0].record.stream], fromFirstSeq: true)
        #expect(gaps.values.allSatisfy(\.isEmpty) && gaps.count == 2)
        #expect(try await store.add([]).isEmpty)
        await store.close()
    }

    @Test(arguments: Backend.allCases) func rowsCarryTheEnergyAndTheExactAmount(_ backend: Backend) async throws {
        let tariff = try TariffFile.parse("currency: EUR\nprecision: 4\nflat: 31.25\nfeed_in: { flat: 8.2 }\n", file: "t.yaml")
        let (store, _, cleanup) = try await backend.fresh(tariff: tariff)
        defer { cleanup() }
        var stream = try SignedStream(key: key, start: "2026-03-29T01:00:00Z")
        try stream.next(delta: 250_000)
        try stream.next(delta: 1_234_567, export: 500_000)
        try stream.next(delta: 30_000_000_000_000)                            // × 312,500 overflows: cannot be priced: kept, amount 0, the reason beside it
        for r in stream.records { _ = try await add(store, r) }
        let rows = try await store.rows()
        #expect(rows.map(\.importMilliwattHours) == [250_000, 1_234_567, 30_000_000_000_000])
        #expect(rows.map { $0.amount.formatted(fractionDigits: 4) } == ["7.8125", "38.5802", "0.0000"])
        #expect(rows[1].exportAmount.formatted(fractionDigits: 4) == "4.1000" && rows[1].exportPrice == Price(scaled: 82_000, precision: 4))
        #expect(rows[0].pricingError == nil && rows[2].pricingError?.contains("overflows 64-bit money") == true)
        #expect(rows.allSatisfy { $0.tariff == tariff.name && $0.currency == "EUR" && $0.quality == "measured" && $0.gateway == "gw-1" })
        #expect(rows[0].startMillis == millis("2026-03-29T01:00:00Z") && rows[0].endMillis == millis("2026-03-29T01:15:00Z"))
        let second = try await store.rows(fromMillis: millis("2026-03-29T01:15:00Z"), toMillis: millis("2026-03-29T01:30:00Z"))
        #expect(second.map(\.seq) == [2])
        await store.close()
    }

    @Test(arguments: Backend.allCases) func gapsAndBrokenLinksSurviveAReopen(_ backend: Backend) async throws {
        let (store, open, cleanup) = try await backend.fresh()
        defer { cleanup() }
        var stream = try SignedStream(key: key)
        try stream.next(6)
        let s = stream.records[0].record.stream
        for i in [1, 2, 5] { _ = try await add(store, stream.records[i]) }
        #expect(try await store.gaps(of: s, fromFirstSeq: true) == [1...1, 4...5])
        await store.close()
        let again = try await open(false)
        #expect(try await again.gaps(of: s, fromFirstSeq: true) == [1...1, 4...5])
        #expect(try await again.gaps(of: s, fromFirstSeq: false) == [4...5])
        #expect(try await again.latestStreams() == [s])
        var other = try SignedStream(key: key)
        for _ in 0..<4 { try other.next(delta: 111_000) }
        #expect(try await add(again, other.records[3], at: 2) == .stored(chainProblems: [LedgerRules.prevMismatch(seq: 4)]))
        #expect(try await again.counts().chainBreaks == 1)
        #expect(try await again.gaps(of: s, fromFirstSeq: true) == [1...1, 5...5])
        await again.close()
    }

    @Test(arguments: Backend.allCases) func statedLossesAreKeptAndNeverAskedFor(_ backend: Backend) async throws {
        let (store, open, cleanup) = try await backend.fresh()
        defer { cleanup() }
        var stream = try SignedStream(key: key)
        try stream.next(10)
        stream.position.storeLost = StoreLoss(seqs: 6...10, cause: .damage)
        try stream.next(2)
        let s = stream.records[0].record.stream
        for seq in [1, 2, 3, 4, 5, 12] { _ = try await add(store, stream.records[seq - 1]) }
        #expect(try await store.gaps(of: s, fromFirstSeq: true) == [6...11])
        _ = try await add(store, stream.records[10])
        #expect(try await store.gaps(of: s, fromFirstSeq: true).isEmpty)
        #expect(try await store.statedLostSeqs() == [s: [6...10]])
        await store.close()
        let again = try await open(false)
        #expect(try await again.gaps(of: s, fromFirstSeq: true).isEmpty)
        #expect(try await again.statedLostSeqs() == [s: [6...10]])
        await again.close()
    }

    @Test(arguments: Backend.allCases) func aRejectedPayloadIsKeptBoundedWithItsDigest(_ backend: Backend) async throws {
        let (store, _, cleanup) = try await backend.fresh()
        defer { cleanup() }
        let huge = [UInt8](repeating: 0x41, count: 100_000)
        try await store.reject(topic: String(repeating: "t", count: 1000), payload: huge, reason: "malformed: x", receivedMillis: 1)
        let kept = try await store.rejections()
        #expect(kept.count == 1 && kept[0].prefix.count == LedgerRules.rejectedPrefixBytes && kept[0].payloadBytes == 100_000)
        #expect(kept[0].topic.utf8.count == LedgerRules.rejectedTopicBytes && kept[0].payloadSHA256?.count == 32 && kept[0].reason == "malformed: x")
        #expect(try await store.counts().rejected == 1)
        await store.close()
    }

    /// Two ledger processes on one database: each reading once, whichever stored it; each knows the other's
    /// work through the stored neighbours or a refresh; a gap is claimed by one of them at a time.
    @Test(arguments: Backend.allCases) func twoProcessesShareOneLedger(_ backend: Backend) async throws {
        let (a, open, cleanup) = try await backend.fresh()
        defer { cleanup() }
        let b = try await open(false)
        var stream = try SignedStream(key: key)
        try stream.next(8)
        let s = stream.records[0].record.stream
        for (i, r) in stream.records.enumerated() where i != 5 { _ = try await add(i % 2 == 0 ? a : b, r) }
        #expect(try await add(a, stream.records[3]) == .duplicate)           // stored by b
        #expect(try await a.counts().readings == 7)
        // a stored 1, 3, 5, 7 and saw its neighbours stored by b; only seq 6 is missing.
        #expect(try await a.gaps(of: s, fromFirstSeq: true) == [6...6])
        #expect(try await b.refreshedGaps(of: s, fromFirstSeq: true) == [6...6])
        #expect(try await a.claimReplay(of: s, seqs: 6...6, by: "a", nowMillis: 1_000, untilMillis: 11_000))
        #expect(try await b.claimReplay(of: s, seqs: 6...6, by: "b", nowMillis: 2_000, untilMillis: 12_000) == false)
        #expect(try await a.claimReplay(of: s, seqs: 6...6, by: "a", nowMillis: 3_000, untilMillis: 13_000))   // its own claim again
        #expect(try await b.claimReplay(of: s, seqs: 6...6, by: "b", nowMillis: 13_000, untilMillis: 23_000))  // expired: b's turn
        _ = try await add(b, stream.records[5])
        #expect(try await a.refreshedGaps(of: s, fromFirstSeq: true).isEmpty)
        #expect(try await a.rows().map(\.seq) == Array(1...8))
        await a.close()
        await b.close()
    }

    @Test(arguments: Backend.allCases) func aReaderRefusesWhatHoldsNoLedger(_ backend: Backend) async throws {
        switch backend {
        case .sqlite:
            let dir = TemporaryDirectory()
            defer { dir.cleanup() }
            _ = try runProcess("/usr/bin/env", ["python3", "-c", "import sqlite3; c = sqlite3.connect('\(dir.file("o.db"))'); c.execute('create table outbox(x)'); c.commit()"])
            await #expect(throws: LedgerError.self) { _ = try await SQLiteLedgerStore.open(path: dir.file("o.db"), readOnly: true) }
        case .postgres:
            let server = try PostgresServer.shared()
            let url = try server.createDatabase()
            let location = try PostgresLocation(url: url, passwordFile: server.passwordFile)
            do {
                _ = try await PostgresLedgerStore.open(location, readOnly: true)
                Issue.record("read a database that holds no ledger")
            } catch {
                #expect("\(error)".contains("holds no ledger"), "\(error)")
            }
            #expect(try server.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database: String(url.split(separator: "/").last!)) == "0")
        }
    }
}
