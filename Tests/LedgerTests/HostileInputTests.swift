import Crypto
import Foundation
@testable import Ledger
import MeterCore
import Signing
import Testing
import TestSupport

/// What the ledger keeps of input it cannot use is bounded, and nothing it stores can be turned against its users.
@Suite(.timeLimit(.minutes(5))) struct HostileInputTests {
    let key = SigningKey.generate(.eddsa)

    @Test func aRejectedPayloadIsKeptAsItsHashLengthAndAShortPrefix() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
        let payload = [UInt8](repeating: 0x41, count: 5 << 20)
        try await store.reject(topic: "metergate/v1/gw/" + String(repeating: "t", count: 70_000), payload: payload, reason: "malformed", receivedMillis: 1)
        let kept = try await store.rejections()
        #expect(kept.count == 1)
        #expect(kept[0].prefix.count == LedgerRules.rejectedPrefixBytes)
        #expect(kept[0].payloadBytes == Int64(payload.count))
        #expect(kept[0].payloadSHA256 == Array(SHA256.hash(data: payload)))
        #expect(kept[0].topic.utf8.count <= 256)
        let size = try FileManager.default.attributesOfItem(atPath: dir.file("ledger.db"))[.size] as? Int ?? 0
        let wal = (try? FileManager.default.attributesOfItem(atPath: dir.file("ledger.db-wal"))[.size] as? Int) ?? 0
        #expect(size + wal < 1 << 20, "the ledger grew by \(size + wal) bytes for one rejected payload")
    }

    @Test func aReadingThatCannotBePricedIsStoredWithItsErrorAndNotAskedForAgain() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        // 9e15 mWh (9e12 kWh) at 31.25 per kWh, kept to 4 decimals: the amount does not fit in 64 bits.
        let tariff = try TariffFile.parse("currency: EUR\nprecision: 4\nflat: 31.25\n", file: "t.yaml")
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"), tariff: tariff)
        var stream = try SignedStream(key: key)
        try stream.next()
        try stream.next(delta: 9_000_000_000_000_000)
        try stream.next()
        for record in stream.records {
            let outcome = try await store.add(try verified(record, key: key), envelope: record.bytes, receivedMillis: 1)
            #expect(outcome == .stored(chainProblems: []))
        }
        let rows = try await store.rows()
        #expect(rows.map(\.seq) == [1, 2, 3])
        #expect(rows[1].pricingError?.contains("overflows 64-bit money") == true, "\(rows[1])")
        #expect(rows[0].pricingError == nil && rows[2].pricingError == nil)
        #expect(await store.gaps(of: stream.records[0].record.stream).isEmpty)
        let csv = LedgerCSV.document(rows).split(separator: "\r\n")
        let cells = csv[2].split(separator: ",", omittingEmptySubsequences: false)
        #expect(cells.count == LedgerCSV.header.count)
        #expect(cells[12].isEmpty && cells[14].isEmpty && cells[15].contains("overflows"), "\(csv[2])")
    }

    @Test func csvCellsThatWouldRunAsAFormulaAreEscaped() {
        let row = LedgerRow(gateway: "=HYPERLINK(\"http://x\")", meter: "+cmd", epoch: "@SUM(A1)", seq: 1, startMillis: 0, endMillis: 900_000,
                            importMilliwattHours: -5, exportMilliwattHours: 0, quality: "-1", tariff: "\tflat", currency: "EUR",
                            price: Price(scaled: 3125, precision: 2), amount: Amount(exact: 0, scale: 2))
        let cells = LedgerCSV.fields(row)
        #expect(cells[0] == "'=HYPERLINK(\"http://x\")")
        #expect(cells[1] == "'+cmd" && cells[2] == "'@SUM(A1)" && cells[8] == "'-1" && cells[9] == "'\tflat")
        #expect(cells[6] == "-0.000005")                       // numbers are numbers, not text
        #expect(cells[10] == "EUR")
    }
}
