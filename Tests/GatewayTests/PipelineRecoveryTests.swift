import Foundation
import Gateway
import Logging
import MeterCore
import Outbox
import Signing
import TestSupport
import Testing

/// After the outbox lost records it had already published (the database came back older than its
/// high-water mark), the accounting state has rolled back with it: the pipeline must not sign the
/// intervals up to the mark again, and the stream continues from the mark with the loss stated.
@Suite(.timeLimit(.minutes(5))) struct PipelineRecoveryTests {
    /// Wall-clock start of the test's samples: a whole second, so 1 s intervals end on whole seconds.
    static let wallStart: Int64 = 1_763_700_000_000
    static let meter = try! MeterID(validating: "m1")

    func loadConfig(_ dir: TemporaryDirectory) throws -> GatewayConfig {
        let yaml = """
            gateway: { id: gw1, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            buses:
              - { id: b1, tcp: { host: 127.0.0.1, port: 1502 } }
            meters:
              - { id: m1, bus: b1, unit: 1, profile: eastron-sdm630 }
            """
        return try GatewayConfig.load(path: dir.write("c.yaml", yaml), boardDirectories: ["\(repositoryRoot)/boards"],
                                      profileDirectories: ["\(repositoryRoot)/profiles"])
    }

    /// Runs a pipeline over samples every 250 ms from `fromMillis` through `toMillis` (after the start) of a
    /// steady 3.6 kW load, then ends it (which saves its state).
    func run(config: GatewayConfig, key: SigningKey, store: SQLiteOutbox, fromMillis: Int64, toMillis: Int64,
             recoveries: [OutboxRecovery] = []) async throws {
        let pipeline = try await ReadingPipeline(config: config, key: key, store: store, bootID: "boot-1", logger: .init(label: "test"),
                                                 recoveries: recoveries) {}
        let running = Task { await pipeline.run() }
        for t in stride(from: fromMillis, through: toMillis, by: 250) {
            let time = Timestamp(wallNanos: (Self.wallStart + t) * 1_000_000, monotonicNanos: UInt64(5_000_000_000 + t * 1_000_000))
            pipeline.submit(Sample(meter: Self.meter, time: time, values: [.energyImport: 1000 + Double(t) / 1000, .power: 3600]))
        }
        pipeline.finish()
        await running.value
    }

    func readings(_ store: SQLiteOutbox, seqs: ClosedRange<UInt64>) async throws -> [ReadingRecord] {
        try await store.records(meter: "m1", seqs: seqs, limit: 1000).map { stored in
            try RecordVerifier.parseWithoutSignatureCheck(stored.bytes).get().record
        }
    }

    @Test func intervalsUpToTheMarkAreNotSignedAgainAndTheFirstNewRecordStatesTheLoss() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try loadConfig(dir)
        let key = SigningKey.generate(.eddsa)
        let path = dir.file("outbox.sqlite"), old = dir.file("old.sqlite")

        let first = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        try await run(config: config, key: key, store: first, fromMillis: 0, toMillis: 3000)
        let kept = try await first.stats().streams.first?.lastSeq ?? 0
        #expect(kept >= 2)
        await first.close()
        try FileManager.default.copyItem(atPath: path, toPath: old)

        // Later intervals are signed and handed out for publishing; then the database loses them.
        let second = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        try await run(config: config, key: key, store: second, fromMillis: 3250, toMillis: 8000)
        let published = try await second.claimPending(limit: 1000)
        let last = try #require(published.last)
        let lastReading = try #require(try await readings(second, seqs: last.seq...last.seq).first)
        #expect(last.seq > kept)
        await second.close()
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.removeItem(atPath: path + suffix)
        }
        try FileManager.default.copyItem(atPath: old, toPath: path)

        let third = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        let recovery = try #require(third.openReport.recoveries.first)
        #expect(recovery == OutboxRecovery(meter: "m1", storedSeq: kept, markSeq: last.seq, intervalEnd: lastReading.endMillis))
        try await run(config: config, key: key, store: third, fromMillis: 8250, toMillis: 12000,
                      recoveries: third.openReport.recoveries)

        let after = try await readings(third, seqs: (last.seq + 1)...1000)
        #expect(try await readings(third, seqs: (kept + 1)...last.seq).isEmpty)
        #expect(after.count >= 3, "intervals after the mark are signed")
        #expect(after.first?.seq == last.seq + 1)
        #expect(after.first?.prev == last.hash, "the chain continues from the last published record")
        #expect(after.first?.storeLost == StoreLoss(seqs: (kept + 1)...last.seq, cause: .damage), "the first new record states the loss, signed")
        #expect(after.dropFirst().allSatisfy { $0.storeLost == nil })
        #expect(after.allSatisfy { $0.startMillis >= lastReading.endMillis },
                "no interval up to \(lastReading.endMillis) is signed again: \(after.map(\.startMillis))")
        // Nothing is counted twice or lost across the loss: the energy picks up where the published record ended.
        let firstAfter = try #require(after.first)
        let resumedAt = firstAfter.importTotal.rawValue - firstAfter.importDelta.rawValue
        #expect(abs(resumedAt - lastReading.importTotal.rawValue) <= 1, "import total \(lastReading.importTotal) then resumed at \(resumedAt)")
        await third.close()
    }
}
