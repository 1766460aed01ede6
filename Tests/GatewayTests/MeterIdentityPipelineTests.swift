import Foundation
import Gateway
import Logging
import MeterCore
import Modbus
import Outbox
import Signing
import TestSupport
import Testing

/// Which meter a record names: the identity a poll read, the commissioned serial, a replacement as a signed
/// statement, and a stranger on a commissioned position. On a real SQLite outbox, with real signatures.
@Suite(.timeLimit(.minutes(5))) struct MeterIdentityPipelineTests {
    static let start: Int64 = 1_767_225_600_100_000_000

    func config(serial: String?, in dir: TemporaryDirectory) throws -> GatewayConfig {
        let pin = serial.map { ", serial: \"\($0)\"" } ?? ""
        let path = dir.write("c.yaml", """
            gateway: { id: gw1, board: sim, state_dir: \(dir.path), interval: 1s }
            buses:
              - { id: b1, tcp: { host: 127.0.0.1, port: 1502 } }
            meters:
              - { id: m1, bus: b1, unit: 1, profile: eastron-sdm630, rated_power: 50000\(pin) }
            """)
        return try GatewayConfig.load(path: path, boardDirectories: ["\(repositoryRoot)/boards"], profileDirectories: ["\(repositoryRoot)/profiles"])
    }

    static func identity(_ serial: String) -> MeterIdentity { MeterIdentity(manufacturer: "Eastron", model: "SDM630", serial: serial)! }

    /// A sample `second` s after the start at `importWh`, 3.6 kW.
    static func sample(_ second: Int, importWh: Double) -> Sample {
        let offset = Int64(second) * 1_000_000_000
        return Sample(meter: try! MeterID(validating: "m1"), time: Timestamp(wallNanos: start + offset, monotonicNanos: UInt64(5_000_000_000 + offset)),
                      values: [.energyImport: importWh, .energyExport: 2, .power: 3600])
    }

    /// Runs a pipeline over the samples (with their identity readings) and returns the records it stored, verified.
    func run(_ config: GatewayConfig, key: SigningKey, store: SQLiteOutbox, _ inputs: [(Sample, IdentityReading?)],
             expecting records: Int64) async throws -> (records: [ReadingRecord], alarms: [String: String]) {
        var logger = Logger(label: "pipeline")
        logger.logLevel = .critical
        let pipeline = try await ReadingPipeline(config: config, key: key, store: store, bootID: nil, logger: logger, clockState: { .synced }) {}
        for (sample, identity) in inputs { pipeline.submit(sample, identity: identity) }
        let running = Task { await pipeline.run() }
        let deadline = ContinuousClock.now + .seconds(30)
        while await pipeline.recordsAppended < records, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let alarms = await pipeline.identityAlarms
        pipeline.finish()
        await running.value
        let stored = try await store.records(meter: "m1", seqs: 1...100, limit: 100)
        let verifier = RecordVerifier(keys: KeySet([key.publicKey]))
        return (try stored.map { try verifier.verify($0.bytes).get().record }, alarms)
    }

    @Test func aRecordNamesTheMeterThatAnsweredItsPoll() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        let inputs: [(Sample, IdentityReading?)] = (0...3).map { (Self.sample($0, importWh: 1000 + Double($0)), $0 == 0 ? .identified(Self.identity("1001")) : nil) }
        let (records, alarms) = try await run(config(serial: nil, in: dir), key: .generate(.eddsa), store: store, inputs, expecting: 3)
        #expect(records.count == 3)
        #expect(records.allSatisfy { $0.sourceID == "eastron:SDM630:1001" && $0.sourceIdentity == .read && $0.replacement == nil })
        #expect(records.allSatisfy { $0.quality == .measured })
        #expect(alarms.isEmpty)
        await store.close()
    }

    /// Without identity registers (or before the first read), the commissioned serial names the meter, and says so.
    @Test func aMeterThatOffersNoIdentityIsNamedByItsCommissionedSerial() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        let inputs: [(Sample, IdentityReading?)] = (0...3).map { (Self.sample($0, importWh: 1000 + Double($0)), $0 == 0 ? .notOffered("refused") : nil) }
        let (records, _) = try await run(config(serial: "77", in: dir), key: .generate(.eddsa), store: store, inputs, expecting: 3)
        #expect(records.count == 3)
        #expect(records.allSatisfy { $0.sourceID == "eastron:SDM630:77" && $0.sourceIdentity == .configured })
        await store.close()
    }

    /// Meter 1001 is swapped for meter 2002, whose counter is higher: without its identity the jump would be paid
    /// as energy. The swap is a signed statement in the interval's record, nothing is paid across it, and the
    /// stream goes on unbroken from the new meter's baseline.
    @Test func aReplacedMeterIsASignedStatementAndANewBaseline() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let key = SigningKey.generate(.eddsa)
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        var inputs: [(Sample, IdentityReading?)] = (0...2).map { (Self.sample($0, importWh: 1000 + Double($0)), $0 == 0 ? .identified(Self.identity("1001")) : nil) }
        inputs.append((Self.sample(3, importWh: 5000), .identified(Self.identity("2002"))))
        inputs += (4...6).map { (Self.sample($0, importWh: 5000 + Double($0 - 3)), nil) }
        let (records, _) = try await run(config(serial: nil, in: dir), key: key, store: store, inputs, expecting: 6)
        #expect(records.map(\.seq) == [1, 2, 3, 4, 5, 6])
        let statements = records.compactMap(\.replacement)
        #expect(statements.count == 1)
        let swap = try #require(records.first { $0.replacement != nil })
        let statement = try #require(swap.replacement)
        #expect(statement.old == "eastron:SDM630:1001" && statement.new == "eastron:SDM630:2002")
        #expect(statement.oldImport == MilliwattHours(1_002_000) && statement.newImport == MilliwattHours(5_000_000))
        #expect(statement.oldExport == MilliwattHours(2_000) && statement.newExport == MilliwattHours(2_000))
        #expect(statement.atMillis == (Self.start + 3_000_000_000) / 1_000_000)
        #expect(swap.quality == .gap, "the interval that holds the swap is flagged")
        #expect(swap.startMillis <= statement.atMillis && statement.atMillis < swap.endMillis)
        // Nothing paid across the swap: 1 Wh a second before and after it, never the 4 kWh step.
        #expect(records.allSatisfy { $0.importDelta <= MilliwattHours(1_000) }, "\(records.map(\.importDelta))")
        // Six seconds at 1 Wh a second, less the one the swap cost: never the step between the meters' counters.
        let paid = records.reduce(0) { $0 + $1.importDelta.rawValue }
        #expect(paid >= 4_000 && paid <= 5_000, "paid \(paid) mWh")
        // The records before the swap name the old meter, those from it on the new one.
        #expect(records.filter { $0.endMillis <= statement.atMillis }.allSatisfy { $0.sourceID == statement.old })
        #expect(records.filter { $0.endMillis > statement.atMillis }.allSatisfy { $0.sourceID == statement.new })
        // One chain throughout.
        var analyzer = ChainAnalyzer()
        let verifier = RecordVerifier(keys: KeySet([key.publicKey]))
        for (n, record) in try await store.records(meter: "m1", seqs: 1...100, limit: 100).enumerated() { analyzer.add(verifier.verify(record.bytes), line: n + 1) }
        #expect(analyzer.report().passed)
        await store.close()
    }

    /// The identity is saved with the records: after a restart, the same meter is no replacement, another one is.
    @Test func theIdentitySurvivesARestart() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let key = SigningKey.generate(.eddsa)
        let config = try config(serial: nil, in: dir)
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        let first: [(Sample, IdentityReading?)] = (0...2).map { (Self.sample($0, importWh: 1000 + Double($0)), $0 == 0 ? .identified(Self.identity("1001")) : nil) }
        _ = try await run(config, key: key, store: store, first, expecting: 2)
        // The same meter after the restart: no statement.
        let same: [(Sample, IdentityReading?)] = (3...5).map { (Self.sample($0, importWh: 1000 + Double($0)), $0 == 3 ? .identified(Self.identity("1001")) : nil) }
        let (afterSame, _) = try await run(config, key: key, store: store, same, expecting: 3)
        #expect(afterSame.allSatisfy { $0.replacement == nil && $0.sourceID == "eastron:SDM630:1001" })
        // Another meter answers after the next restart: the statement names the meter read before it.
        let other: [(Sample, IdentityReading?)] = (6...8).map { (Self.sample($0, importWh: 10 + Double($0)), $0 == 6 ? .identified(Self.identity("3003")) : nil) }
        let (afterOther, _) = try await run(config, key: key, store: store, other, expecting: 3)
        let statement = try #require(afterOther.compactMap(\.replacement).first)
        #expect(statement.old == "eastron:SDM630:1001" && statement.new == "eastron:SDM630:3003")
        #expect(statement.oldImport == MilliwattHours(1_005_000) && statement.newImport == MilliwattHours(16_000))
        await store.close()
    }

    /// A serial other than the commissioned one answering is an alarm, and its energy is never `measured`.
    @Test func aStrangerOnACommissionedPositionIsAnAlarm() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        let inputs: [(Sample, IdentityReading?)] = (0...3).map { (Self.sample($0, importWh: 1000 + Double($0)), $0 == 0 ? .identified(Self.identity("9999")) : nil) }
        let (records, alarms) = try await run(config(serial: "1001", in: dir), key: .generate(.eddsa), store: store, inputs, expecting: 3)
        #expect(records.count == 3)
        #expect(records.allSatisfy { $0.sourceID == "eastron:SDM630:9999" && $0.sourceIdentity == .mismatch && $0.quality != .measured })
        #expect(alarms["m1"]?.contains("9999") == true && alarms["m1"]?.contains("1001") == true, "\(alarms)")
        await store.close()
    }
}
