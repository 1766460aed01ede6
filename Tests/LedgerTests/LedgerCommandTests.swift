import Foundation
import Ledger
import MQTT
import MeterCore
import Signing
import Testing
import TestSupport

/// `metergate ledger` as a process against a real mosquitto, and its CSV read back by Python's csv module.
@Suite(.serialized, .timeLimit(.minutes(5))) struct LedgerCommandTests {
    let key = SigningKey.generate(.eddsa)

    static let tariff = """
        currency: EUR
        precision: 4
        time_of_use:
          time_zone: Europe/Berlin
          default: 20
          periods:
            - { days: [sat, sun], from: 1, to: 2, price: 10.125 }
            - { days: [sun], from: 3, to: 4, price: 30.5 }
        """

    @Test func theLedgerCommandStoresVerifiesAsksForGapsAndExportsCSV() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let publicKey = dir.write("public.pem", key.publicKey.pemRepresentation)
        let tariff = dir.write("berlin.yaml", Self.tariff)
        let db = dir.file("ledger.db")
        let ledger = try BackgroundProcess(try metergateBinary(), [
            "ledger", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--db", db, "--gateway", "gw-1", "--key", publicKey,
            "--tariff", tariff, "--replay-retry", "1"], logPath: dir.file("ledger.log"))
        defer { _ = ledger.stop() }
        #expect(await eventually { ledger.log.contains("subscribed") }, "\(ledger.log)")

        let watcher = testClient(broker, "watch")
        let requests = Inbox(watcher)
        watcher.subscribe("metergate/v1/gw-1/cmd/replay")
        watcher.start()
        #expect(await eventually { requests.subscriptions == 1 })
        let publisher = try await Publisher(broker)
        // Sunday 29 March 2026 from 00:00Z: local 01:00-01:45 CET, then the clocks jump, 03:00-03:45 CEST.
        var stream = try SignedStream(key: key, start: "2026-03-29T00:00:00Z")
        try stream.next(8)
        for i in [0, 1, 2, 3, 3, 5, 6, 7] { try publisher.send(stream.records[i]) }    // seq 4 twice, seq 5 missing
        #expect(await eventually { requests.all.contains { $0.text == #"{"meter":"main","from":5,"to":5}"# } },
                "requests: \(requests.all.map(\.text))\n\(ledger.log)")
        try publisher.send(stream.records[4])

        func export(_ extra: [String] = []) throws -> ProcessResult {
            try runProcess(try metergateBinary(), ["ledger", "export", "--db", db] + extra)
        }
        #expect(try await eventually { try export().stdout.split(separator: "\r\n").count == 9 }, "\(ledger.log)")
        #expect(ledger.stop(signal: SIGTERM) == 0, "\(ledger.log)")
        #expect(ledger.log.contains("stored=8") && ledger.log.contains("duplicates=1") && ledger.log.contains("forks=0"), "\(ledger.log)")

        let full = try export()
        #expect(full.status == 0, "\(full.stderr)")
        let csv = dir.write("ledger.csv", full.stdout)
        let python = "\(repositoryRoot)/.venv/bin/python"
        let check = try runProcess(python, ["\(repositoryRoot)/Tests/peers/ledger_csv_check.py", csv, "Europe/Berlin", "20",
                                            "sat,sun:1-2=10.125", "sun:3-4=30.5"])
        #expect(check.status == 0, "\(check.stderr)")
        struct Report: Decodable { var rows: Int; var errors: [String]; var amounts: [String]; var total: String }
        let report = try JSONDecoder().decode(Report.self, from: Data(check.stdout.utf8))
        #expect(report.rows == 8 && report.errors.isEmpty, "\(report.errors)\n\(full.stdout)")
        // 0.25 kWh each: four at 10.125 ct (local 01:xx CET), four at 30.5 ct (local 03:xx CEST).
        #expect(report.amounts == ["2.5313", "2.5313", "2.5313", "2.5313", "7.6250", "7.6250", "7.6250", "7.6250"])
        #expect(report.total == "40.625000000")

        // --from/--to select by interval start; a bad time is a usage error naming the option.
        let window = try export(["--from", "2026-03-29T00:30:00Z", "--to", "2026-03-29T01:15:00Z"])
        #expect(window.stdout.split(separator: "\r\n").count == 1 + 3)
        let bad = try export(["--from", "yesterday"])
        #expect(bad.status == 2 && bad.stderr.contains("--from 'yesterday'"))
        let missing = try runProcess(try metergateBinary(), ["ledger", "export", "--db", dir.file("nope.db")])
        #expect(missing.status == 2 && missing.stderr.contains("no such ledger"))
        await publisher.client.shutdown()
        await watcher.shutdown()
    }

    /// A prosumer meter: import priced at the tariff, export earning its feed_in price, both in the CSV and both
    /// re-priced by the independent checker.
    @Test func importAndExportArePricedAndExported() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let tariff = try TariffFile.parse("currency: EUR\nprecision: 4\nflat: 31.25\nfeed_in: { flat: 8.20 }\n", file: "prosumer.yaml")
        let db = dir.file("ledger.db")
        let store = try await SQLiteLedgerStore.open(path: db, tariff: tariff)
        var stream = try SignedStream(key: key, start: "2026-03-29T10:00:00Z")
        // Morning: drawing 0.25 kWh; midday: feeding 1.2 kWh back and drawing nothing; then both in one interval.
        try stream.next(delta: 250_000)
        try stream.next(delta: 0, export: 1_200_000)
        try stream.next(delta: 100_000, export: 333_333)
        for record in stream.records { _ = try await store.add(try verified(record, key: key), envelope: record.bytes, receivedMillis: 1) }
        let exported = try runProcess(try metergateBinary(), ["ledger", "export", "--db", db])
        #expect(exported.status == 0, "\(exported.stderr)")
        let csv = dir.write("ledger.csv", exported.stdout)
        let check = try runProcess("\(repositoryRoot)/.venv/bin/python", ["\(repositoryRoot)/Tests/peers/ledger_csv_check.py", csv, "UTC", "31.25",
                                                                        "feed_in=8.20"])
        struct Report: Decodable { var rows: Int; var errors: [String] }
        let report = try JSONDecoder().decode(Report.self, from: Data(check.stdout.utf8))
        #expect(check.status == 0 && report.rows == 3 && report.errors.isEmpty, "\(report.errors)\n\(exported.stdout)")
        let rows = exported.stdout.split(separator: "\r\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(rows.map { String($0[7]) } == ["0.000000", "1.200000", "0.333333"])
        #expect(rows.map { String($0[14]) } == ["0.0000", "9.8400", "2.7333"])
        #expect(rows.map { String($0[12]) } == ["7.8125", "0.0000", "3.1250"])
    }

    @Test func aBadTariffFileIsAUsageErrorNamingFileKeyAndLine() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let tariff = dir.write("bad.yaml", "currency: EUR\nprecision: 4\nflat: 31.25\nflta: 1\n")
        let publicKey = dir.write("public.pem", SigningKey.generate(.eddsa).publicKey.pemRepresentation)
        let result = try runProcess(try metergateBinary(), ["ledger", "--db", dir.file("l.db"), "--tariff", tariff, "--key", publicKey, "--timeout", "1"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("bad.yaml") && result.stderr.contains("flta") && result.stderr.contains("4"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("l.db")))       // nothing created on a usage error
    }
}
