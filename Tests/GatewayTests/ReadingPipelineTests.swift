import Accounting
import Foundation
import Gateway
import Logging
import MeterCore
import Outbox
import PowerRails
import Signing
import Synchronization
import TestSupport
import Testing

/// The pipeline on a real SQLite outbox, with samples of several meters queued before it runs (as after a
/// burst: every meter closing the same interval).
@Suite(.timeLimit(.minutes(5))) struct ReadingPipelineTests {
    /// A config of `meters` eastron-sdm630 meters with a 1 s settlement interval.
    func config(meters: Int, in dir: TemporaryDirectory, selfCheck: Bool = true) throws -> GatewayConfig {
        let list = (1...meters).map { "  - { id: meter-\($0), bus: b1, unit: \($0), profile: eastron-sdm630, rated_power: 50000 }" }
        let path = dir.write("c.yaml", """
            gateway: { id: gw1, board: sim, state_dir: \(dir.path), interval: 1s }
            buses:
              - { id: b1, tcp: { host: 127.0.0.1, port: 1502 } }
            meters:
            \(list.joined(separator: "\n"))
            signing: { self_check: \(selfCheck) }
            """)
        return try GatewayConfig.load(path: path, boardDirectories: ["\(repositoryRoot)/boards"], profileDirectories: ["\(repositoryRoot)/profiles"])
    }

    /// One sample per meter and second, 100 ms after each second's start, at 3.6 kW (1 Wh a second).
    func samples(_ config: GatewayConfig, seconds: Int) -> [Sample] {
        var samples: [Sample] = []
        for s in 0...seconds {
            let offset: Int64 = Int64(s) * 1_000_000_000
            let time = Timestamp(wallNanos: 1_767_225_600_100_000_000 + offset, monotonicNanos: UInt64(5_000_000_000 + offset))
            for (i, meter) in config.meters.enumerated() {
                let importWh: Double = 1000 * Double(i + 1) + Double(s)
                samples.append(Sample(meter: meter.id, time: time, values: [.energyImport: importWh, .energyExport: 0, .power: 3600]))
            }
        }
        return samples
    }

    /// Runs a pipeline over `samples` (all queued before it starts); returns the outbox, the number of
    /// commits that stored records and the records they stored, both read before the pipeline is finished.
    func run(_ config: GatewayConfig, key: SigningKey, samples: [Sample], expecting records: Int64,
             in dir: TemporaryDirectory, clock: ClockState = .synced) async throws -> (store: SQLiteOutbox, commits: Int) {
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        let commits = Atomic<Int>(0)
        var logger = Logger(label: "pipeline")
        logger.logLevel = .warning
        let pipeline = try await ReadingPipeline(config: config, key: key, store: store, bootID: nil, logger: logger, clockState: { clock }) {
            commits.add(1, ordering: .relaxed)
        }
        for sample in samples { pipeline.submit(sample) }
        let running = Task { await pipeline.run() }
        let deadline = ContinuousClock.now + .seconds(60)
        while await pipeline.recordsAppended < records, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let seen = commits.load(ordering: .relaxed)
        pipeline.finish()
        await running.value
        #expect(await pipeline.recordsAppended == records)
        return (store, seen)
    }

    /// With the signer's self-check on (the default) and off (`signing.self_check: false`): the records verify
    /// either way.
    @Test(arguments: [true, false])
    func aBurstOfClosedIntervalsIsStoredInOneTransactionWithItsState(selfCheck: Bool) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try config(meters: 20, in: dir, selfCheck: selfCheck)
        #expect(config.signing.selfCheck == selfCheck)
        let key = SigningKey.generate(.eddsa)
        // Three seconds after the first sample: three intervals closed per meter.
        // The clock state the pipeline reads when the intervals close is signed with each record.
        let clock: ClockState = selfCheck ? .synced : .unsynced
        let (store, commits) = try await run(config, key: key, samples: samples(config, seconds: 3), expecting: 60, in: dir, clock: clock)
        #expect(commits == 1)
        let stats = try await store.stats()
        #expect(stats.pending == 60)
        // Every meter's chain verifies, and its accounting state was saved.
        let verifier = RecordVerifier(keys: KeySet([key.publicKey]))
        for meter in config.meters {
            let records = try await store.records(meter: meter.id.rawValue, seqs: 1...10, limit: 10)
            #expect(records.map(\.seq) == [1, 2, 3])
            var analyzer = ChainAnalyzer()
            for (n, record) in records.enumerated() {
                let result = verifier.verify(record.bytes)
                #expect((try? result.get())?.record.clock == clock)
                analyzer.add(result, line: n + 1)
            }
            #expect(analyzer.report().passed)
            #expect(try await store.savedState("accounting/\(meter.id)") != nil)
        }
        await store.close()
    }

    /// A record that cannot be signed (a counter jump whose power overflows the record's integers) holds back its
    /// own stream only: the other meters' records of the same burst are stored, and the stream is alarmed.
    @Test func aStreamThatCannotBeSignedDoesNotHoldBackTheOthers() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.write("c.yaml", """
            gateway: { id: gw1, board: sim, state_dir: \(dir.path), interval: 1s }
            buses:
              - { id: b1, tcp: { host: 127.0.0.1, port: 1502 } }
            meters:
              - { id: meter-1, bus: b1, unit: 1, profile: eastron-sdm630 }
              - { id: meter-2, bus: b1, unit: 2, profile: eastron-sdm630, rated_power: 1e20 }
            """)
        let config = try GatewayConfig.load(path: path, boardDirectories: ["\(repositoryRoot)/boards"], profileDirectories: ["\(repositoryRoot)/profiles"])
        // A rated_power far above anything real (a typo) lets the jump below through the plausibility bound.
        var burst = samples(config, seconds: 3)
        // meter-2's counter jumps by 9e14 Wh between its second and third sample: 3.2e18 W over a 1 s interval.
        for (i, sample) in burst.enumerated() where sample.meter.rawValue == "meter-2" && sample.time.wallNanos >= 1_767_225_602_000_000_000 {
            burst[i] = Sample(meter: sample.meter, time: sample.time,
                              values: [.energyImport: (sample.values[.energyImport] ?? 0) + 9e14, .energyExport: 0, .power: 3600])
        }
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        var logger = Logger(label: "pipeline")
        logger.logLevel = .critical
        let pipeline = try await ReadingPipeline(config: config, key: .generate(.eddsa), store: store, bootID: nil, logger: logger) {}
        for sample in burst { pipeline.submit(sample) }
        let running = Task { await pipeline.run() }
        let deadline = ContinuousClock.now + .seconds(30)
        while await pipeline.recordsAppended < 3, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let blocked = await pipeline.blocked
        pipeline.finish()
        await running.value
        #expect(try await store.records(meter: "meter-1", seqs: 1...10, limit: 10).map(\.seq) == [1, 2, 3])
        #expect(try await store.records(meter: "meter-2", seqs: 1...10, limit: 10).isEmpty)
        #expect(Array(blocked.keys) == ["meter-2"], "\(blocked)")
        await store.close()
    }

    @Test func aBurstLargerThanOneBatchIsSplitAndNothingIsLost() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try config(meters: 100, in: dir)
        // 100 meters × 3 closed intervals: 300 records, more than one batch holds.
        let (store, commits) = try await run(config, key: SigningKey.generate(.es256), samples: samples(config, seconds: 3), expecting: 300, in: dir)
        #expect(commits == 2)
        let stats = try await store.stats()
        #expect(stats.pending == 300)
        #expect(stats.streams.count == 100)
        await store.close()
    }

    /// `outbox.state_save`: between closed intervals, a power rail's state (its integrated energy lives only there)
    /// is saved this often and not more often; a counter meter's state is its counter, saved only with its records
    /// and at shutdown (rewriting every counter's state every few seconds was most of a gateway's flash writes).
    @Test(arguments: [("power", "1s", true), ("power", "1h", false), ("counter", "1s", false)])
    func onlyIntegratedStateIsSavedBetweenCloses(kind: String, every: String, saved: Bool) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let meter = try MeterID(validating: "meter-1")
        let settings = SourceSettings(meter: meter, source: kind == "power" ? .hwmon : .modbus, grid: try IntervalGrid(periodMillis: 3_600_000))
        let stream = StreamSpecification(id: meter, sourceID: "test", envelope: .jws,
                                         accounting: kind == "power" ? .power(settings)
                                             : .counter(.init(settings: settings, scale: .milliwattHours, ratedPowerWatts: nil)))
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        var logger = Logger(label: "pipeline")
        logger.logLevel = .warning
        // The pipeline's timers read this clock; the test steps it 600 ms per sample instead of sleeping.
        let clock = Mutex(ContinuousClock.now)
        let pipeline = try await ReadingPipeline(gateway: try GatewayID(validating: "gw1"), streams: [stream], key: .generate(.eddsa), selfCheck: true,
                                                 stateSave: every == "1s" ? .seconds(1) : .seconds(3600), store: store, bootID: nil, logger: logger,
                                                 now: { clock.withLock { $0 } }) {}
        let running = Task { await pipeline.run() }
        // Samples and ticks inside one hour-long interval: nothing closes, so only the periodic save stores state.
        let start: Int64 = 1_767_225_600_100_000_000
        for s in 0..<4 {
            let time = Timestamp(wallNanos: start + Int64(s) * 1_000_000_000, monotonicNanos: UInt64(5_000_000_000 + s * 1_000_000_000))
            clock.withLock { $0 += .milliseconds(600) }
            if kind == "power" {
                pipeline.submit(rail: meter, reading: .power(microwatts: 3_600_000_000), at: time)
            } else {
                pipeline.submit(Sample(meter: meter, time: time, values: [.energyImport: 1000 + Double(s), .energyExport: 0, .power: 3600]))
            }
            pipeline.submitTick(time)
            let deadline = ContinuousClock.now + .seconds(20)
            while await pipeline.inputsHandled < 2 * (s + 1), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(await pipeline.inputsHandled == 8)
        let found = try await store.savedState("accounting/meter-1") != nil
        pipeline.finish()
        await running.value
        #expect(found == saved)
        #expect(await pipeline.recordsAppended == 0)
        // A clean stop saves every stream's state, counters included.
        #expect(try await store.savedState("accounting/meter-1") != nil)
        await store.close()
    }
}
