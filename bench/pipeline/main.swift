// End-to-end gateway benchmark: simulated meters → accounting → signing → outbox commit → MQTT publish
// (QoS 1) → PUBACK on a loopback mosquitto, through the real ReadingPipeline, SQLiteOutbox and
// OutboxPublisher, at full speed. Readings (signed records acknowledged by the broker) per CPU-second of the
// whole process, next to swift-crypto's raw signing rate for the same curve measured in the same process.
//
//   swift run -c release pipeline-bench [--meters 100] [--intervals 300] [--algorithm EdDSA|ES256|all]
//                                       [--self-check on|off|both] [--seconds 1]
//
// Each curve runs with the signer's self-check on (the default: every signature verified before its record is
// stored) and off (`signing.self_check: false`). The floors are what the design cannot do without per reading,
// each in its cheapest form: the record built, its bytes appended to a SQLite outbox in fsynced batches, and sent
// as one QoS 1 message by libmosquitto's own client (`mosquitto_pub -l`, its CPU per message, same broker); with
// the raw signature they bound the ratio any gateway of this design could reach (the ceiling), and the end-to-end
// ratio over the ceiling says how much of that this gateway reaches. The same floors are
// measured once more as the contract changes that would lower them would make them: one interval's records sent as
// one message, stored as one row, and both.
//
// The clock is accelerated: each meter's samples are one second apart in sample time (the settlement
// interval is 1 s), so every sample after a meter's first closes one interval and makes one signed record;
// the wall clock is never waited on. The samples come from the Simulator's meters (load curves and their
// energy integral) and are made before the timed run: they stand for what the meters answer, not for the
// gateway's work. Needs mosquitto on PATH (scripts/apt-packages.txt); run from the repository root.
import Delivery
import BenchSupport
import Foundation
import Gateway
import Logging
import MQTT
import MeterCore
import Modbus
import Metrics
import Outbox
import Prometheus
import Signing
import Simulator
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var meters = 100
    var intervals = 300
    var algorithms: [SigningAlgorithm] = [.eddsa, .es256]
    var selfChecks = [true, false]
    var seconds = 1.0

    init(_ args: [String]) {
        var i = 0
        while i + 1 < args.count {
            let value = args[i + 1]
            switch args[i] {
            case "--meters": meters = Int(value) ?? meters
            case "--intervals": intervals = Int(value) ?? intervals
            case "--seconds": seconds = Double(value) ?? seconds
            case "--algorithm": algorithms = value == "all" ? algorithms : [SigningAlgorithm(rawValue: value)].compactMap { $0 }
            case "--self-check": selfChecks = ["on": [true], "off": [false], "both": [true, false]][value] ?? []
            default: fatalError("unknown option \(args[i])")
            }
            i += 2
        }
        guard meters >= 1, meters <= 247, intervals >= 1, !algorithms.isEmpty, !selfChecks.isEmpty else {
            fatalError("--meters 1...247, --intervals >= 1, --algorithm EdDSA, ES256 or all, --self-check on, off or both")
        }
    }
}

/// The simulation's monotonic clock, moved by the benchmark: one step per settlement interval.
final class SteppedClock: TimeSource {
    let nanos = Atomic<UInt64>(1_000_000_000)
    func now() -> Timestamp {
        let n = nanos.load(ordering: .relaxed)
        return Timestamp(wallNanos: Int64(n), monotonicNanos: n)
    }
}

/// Points stderr at /dev/null while `body` runs (the gateway's log lines, one per signed record at `info`,
/// are written as in production, but not kept), then back.
func withStderrDiscarded<T>(_ body: () async throws -> T) async rethrows -> T {
    fflush(nil)
    let saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY)
    dup2(null, STDERR_FILENO)
    close(null)
    defer { dup2(saved, STDERR_FILENO); close(saved) }
    return try await body()
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
let root = FileManager.default.currentDirectoryPath
let work = NSTemporaryDirectory() + "pipeline-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }
let (broker, port) = try startMosquitto(in: work)
defer { broker.terminate() }

/// A gateway config as a deployment would write it: `options.meters` eastron-sdm630 meters on one Modbus TCP
/// bus (never opened here), a 1 s settlement interval, the loopback broker, the signer's self-check as given;
/// every other setting the default.
func loadConfig(_ algorithm: SigningAlgorithm, selfCheck: Bool, directory: String) throws -> GatewayConfig {
    let meters = (1...options.meters).map { i in
        "  - { id: meter-\(i), bus: sim-tcp, unit: \(i), profile: eastron-sdm630, poll: 1s, rated_power: 50000 }"
    }
    let yaml = """
        gateway: { id: bench-gw, board: sim, state_dir: \(directory), interval: 1s }
        buses:
          - { id: sim-tcp, tcp: { host: 127.0.0.1, port: 15020 } }
        meters:
        \(meters.joined(separator: "\n"))
        mqtt: { host: 127.0.0.1, port: \(port) }
        metrics: { enabled: false }
        signing: { key: \(directory)/signing.key, algorithm: \(algorithm.rawValue), self_check: \(selfCheck) }
        """
    try yaml.write(toFile: "\(directory)/metergate.yaml", atomically: true, encoding: .utf8)
    return try GatewayConfig.load(path: "\(directory)/metergate.yaml", boardDirectories: ["\(root)/boards"], profileDirectories: ["\(root)/profiles"])
}

/// Every meter's samples, one per interval: a simulated meter per configured one (its own load curve, its
/// counters the integral of it), read once per simulated second, with the quantities its profile has.
func makeSamples(_ config: GatewayConfig) -> [[Sample]] {
    let clock = SteppedClock()
    let start = clock.nanos.load(ordering: .relaxed)
    let simulated = config.meters.enumerated().map { i, meter in
        SimulatedMeter(profile: meter.profile,
                       curve: .sine(baseWatts: 2000 + 150 * Double(i), amplitudeWatts: 1500, period: .seconds(60 + i)),
                       importWattHours: 1_000_000 + 1000 * Double(i), clock: clock)
    }
    // Sample times: 2026-01-01T00:00:00.050Z plus one second per round (50 ms after each interval boundary).
    let wall0: Int64 = 1_767_225_600_000_000_000 + 50_000_000
    return (0...options.intervals).map { round in
        clock.nanos.store(start + UInt64(round) * 1_000_000_000, ordering: .relaxed)
        let time = Timestamp(wallNanos: wall0 + Int64(round) * 1_000_000_000, monotonicNanos: start + UInt64(round) * 1_000_000_000)
        return zip(config.meters, simulated).map { meter, sim in
            let values = sim.values()
            let wanted = Set(meter.profile.fields.map(\.quantity))
            return Sample(meter: meter.id, time: time, values: values.filter { wanted.contains($0.key) })
        }
    }
}

struct GatewayRun {
    var records: Int64
    var cpuSeconds: Double
    var wallSeconds: Double
    var perCPUSecond: Double { Double(records) / cpuSeconds }
}

/// Feeds every sample through the pipeline of a GatewayApplication built from `config` (as `metergate run` builds
/// it) into a fresh SQLite outbox; with `publish`, its publisher sends every record to the broker. Timed from the
/// first sample to the last record stored (without `publish`) or acknowledged by the broker (with it).
func runGateway(_ config: GatewayConfig, key: SigningKey, samples: [[Sample]], publish: Bool, name: String) async throws -> GatewayRun {
    var config = config
    config.outbox.path = "\(work)/\(name).sqlite"
    var settings = GatewayApplication.Settings()
    settings.bootID = nil
    settings.shutdownSignals = []
    // The gateway `metergate run` builds; its pollers are not run: the samples are fed to its pipeline here.
    let application = try await GatewayApplication.make(config: config, key: key, keys: Array(KeySet([key.publicKey]).document.utf8),
                                                        password: nil, settings: settings, logger: Logger(label: "bench"))
    let store = application.store, publisher = application.publisher, pipeline = application.pipeline
    let publishing = publish ? Task { try await publisher.run() } : nil
    if publish { while await publisher.counters.connections < 1 { try await Task.sleep(for: .milliseconds(5)) } }

    let (cpu0, wall0) = (processCPUSeconds(), wallSeconds())
    let running = Task { await pipeline.run() }
    // The pipeline's input holds 4096 entries and drops the oldest beyond: keep at most about 2048 unhandled
    // (every sample after a meter's first closes one interval and makes one record).
    var submitted = 0
    for batch in samples {
        while submitted - Int(await pipeline.recordsAppended) > 2048 { try await Task.sleep(for: .microseconds(500)) }
        for sample in batch { pipeline.submit(sample) }
        submitted += batch.count
    }
    pipeline.finish()
    await running.value
    let produced = await pipeline.recordsAppended
    if publish { while await publisher.counters.delivered < produced { try await Task.sleep(for: .milliseconds(1)) } }
    let (cpu1, wall1) = (processCPUSeconds(), wallSeconds())

    let stats = try await store.stats()
    let expected = Int64(options.meters * options.intervals)
    guard produced == expected, stats.pending + stats.inflight + stats.delivered == expected, !publish || stats.delivered == expected else {
        fatalError("\(name): expected \(expected) records; pipeline appended \(produced), outbox has \(stats.pending) pending, \(stats.inflight) inflight, \(stats.delivered) delivered")
    }
    publishing?.cancel()
    _ = try await publishing?.value
    await store.close()
    return GatewayRun(records: produced, cpuSeconds: cpu1 - cpu0, wallSeconds: wall1 - wall0)
}

/// Signing alone: the records of `count` intervals of one meter, signed as the pipeline signs them.
func signOnly(_ config: GatewayConfig, key: SigningKey, count: Int, selfCheck: Bool? = nil) throws -> (perRecord: Double, sample: [UInt8]) {
    let meter = config.meters[0]
    let signer = try RecordSigner(gateway: config.gateway, meter: meter.id, sourceID: "\(meter.profile.id) unit \(meter.unit) on \(meter.bus)",
                                  envelope: meter.envelope, key: key, selfCheck: selfCheck ?? config.signing.selfCheck)
    var position = StreamPosition.first(epoch: "bench")
    var last: [UInt8] = []
    let start = threadCPUSeconds()
    for i in 0..<count {
        let millis = 1_767_225_600_000 + Int64(i) * 1000
        let result = IntervalResult(meter: meter.id, source: .modbus, startMillis: millis, endMillis: millis + 1000,
                                    importTotal: MilliwattHours(1_000_000_000 + Int64(i) * 700), exportTotal: .zero,
                                    importDelta: MilliwattHours(700), exportDelta: .zero, averagePowerWatts: 2520, peakPowerWatts: 2520,
                                    sampleCount: 1, quality: .measured)
        let signed = try signer.sign(result: result, position: position)
        position = StreamPosition(epoch: "bench", seq: position.seq + 1, prev: signed.hash, previousKeyID: signed.keyID)
        last = signed.bytes
    }
    return ((threadCPUSeconds() - start) / Double(count), last)
}

/// CPU seconds of this process per record to append `count` copies of `record` to a fresh SQLite outbox (the gateway's
/// settings), `options.meters` records per transaction, one per meter, as a burst of every meter's interval is stored.
/// With `recordsPerRow` above 1 the burst is stored as rows of that many records each (the bytes of one row are
/// that many copies of `record`): what a store of batches instead of records would cost.
func storageFloor(record: [UInt8], count: Int, recordsPerRow: Int = 1) async throws -> Double {
    let store = try await SQLiteOutbox.open(path: "\(work)/storage-floor-\(record.count)-\(count)-\(recordsPerRow).sqlite",
                                            configuration: OutboxConfiguration(), logger: Logger(label: "outbox"))
    let hash = Array(repeating: UInt8(0xA5), count: 32)
    let rowBytes = Array(repeatElement(record, count: recordsPerRow).joined())
    let rowsPerBurst = max(1, options.meters / recordsPerRow)
    let batches = max(1, count / options.meters)
    let cpu0 = processCPUSeconds()
    for batch in 0..<batches {
        let requests = (1...rowsPerBurst).map { m in
            AppendRequest(meter: "meter-\(m)", intervalEnd: 1_767_225_600_000 + Int64(batch) * 1000) { _ in (rowBytes, hash) }
        }
        _ = try await store.append(requests, saving: [:])
    }
    let cpu = processCPUSeconds() - cpu0
    await store.close()
    return cpu / Double(batches * rowsPerBurst * recordsPerRow)
}

// The gateway's process-wide settings, as `metergate run` makes them: the allocator's trim threshold, its log
// handler at the configured level, Prometheus metrics.
HeapTrimming.setThreshold()
GatewayLogHandler.bootstrap(level: .info)
MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))

print("MeterGate end-to-end benchmark: \(options.meters) meters × \(options.intervals) intervals of 1 s (accelerated clock), "
      + "\(ProcessInfo.processInfo.activeProcessorCount) cores visible")
print("simulated samples → ReadingPipeline (accounting, signing, SQLite outbox commit) → OutboxPublisher → QoS 1 PUBACK from mosquitto")
print("readings/CPU-s: signed records acknowledged by the broker per CPU-second of the whole process (getrusage, all threads);")
print("raw sign/CPU-s: swift-crypto signing the same record bytes on one thread, same process, same run. Target: ratio >= 0.60.")
print("")
print("algorithm, self-check   readings    CPU s   wall s   readings/CPU-s   raw sign/CPU-s   ratio   target 0.60")
var breakdowns: [String] = []
var floors: [(label: String, rawSign: Double, build: Double, record: [UInt8])] = []
var ratios: [(algorithm: String, selfCheck: Bool, ratio: Double)] = []
for algorithm in options.algorithms {
    for selfCheck in options.selfChecks {
        let label = "\(algorithm.rawValue), \(selfCheck ? "on" : "off")"
        let directory = "\(work)/\(algorithm.rawValue)-\(selfCheck)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = try loadConfig(algorithm, selfCheck: selfCheck, directory: directory)
        let key = SigningKey.generate(algorithm)
        let samples = makeSamples(config)
        let signing = try signOnly(config, key: key, count: min(options.meters * options.intervals, 20_000))
        let raw = try rawSignRate(algorithm == .eddsa ? .ed25519 : .p256, message: signing.sample, seconds: options.seconds)
        let name = "\(algorithm.rawValue)-\(selfCheck ? "checked" : "unchecked")"
        let (e2e, stored) = try await withStderrDiscarded {
            (try await runGateway(config, key: key, samples: samples, publish: true, name: "\(name)-e2e"),
             try await runGateway(config, key: key, samples: samples, publish: false, name: "\(name)-stored"))
        }
        let ratio = e2e.perCPUSecond / raw
        ratios.append((algorithm.rawValue, selfCheck, ratio))
        print(label.padding(toLength: 21, withPad: " ", startingAt: 0) + String(format: " %10lld %8.2f %8.2f %16.0f %16.0f %7.2f", e2e.records, e2e.cpuSeconds, e2e.wallSeconds,
                     e2e.perCPUSecond, raw, ratio) + "   " + (ratio >= 0.6 ? "met" : "NOT met"))
        // Per record, µs of CPU: the stages measured apart (signing alone on one thread; the pipeline without the
        // publisher), the rest by difference.
        let total = e2e.cpuSeconds / Double(e2e.records) * 1e6, stage = stored.cpuSeconds / Double(stored.records) * 1e6
        let sign = signing.perRecord * 1e6, rawSign = 1e6 / raw
        breakdowns.append(label.padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: " %8.1f %12.1f %14.1f %16.1f %14.1f", total, rawSign, sign - rawSign, stage - sign, total - stage))
        if selfCheck == options.selfChecks.last {
            // Building the record without the self-check, the least signing can do besides the signature.
            let bare = selfCheck ? try signOnly(config, key: key, count: min(options.meters * options.intervals, 20_000), selfCheck: false) : signing
            floors.append((algorithm.rawValue, rawSign, max(0, bare.perRecord * 1e6 - rawSign), signing.sample))
        }
    }
}
print("")
print("CPU µs per reading   total   raw signature   record build   accounting +      publish +")
print("                                (swift-crypto)  + self-check   outbox commit   PUBACK")
for line in breakdowns { print(line) }
print("")
print("total: the end-to-end run above; raw signature: 1 / raw sign rate; record build + self-check: RecordSigner.sign alone")
print("(payload, canonical JSON, hash, envelope, verifying its own signature when on) minus the raw signature; accounting +")
print("outbox commit: the same pipeline without a publisher, minus signing (actor hops, state snapshots, fsynced transactions")
print("of up to 256 records, metrics, log line); publish + PUBACK: the end-to-end run minus that (claim, publish, mark delivered).")
print("")
// The floors: what the design cannot do without per reading, each in its cheapest form, next to the signature.
print("floors, CPU µs per reading: the record built (RecordSigner.sign without the self-check, minus the raw signature);")
print("stored: the same record bytes appended to a fresh SQLite outbox, one record per meter and \(options.meters) per fsynced")
print("transaction, nothing else (no state, no accounting); sent: mosquitto_pub -l (libmosquitto's own client), QoS 1, the same")
print("bytes to the same broker, CPU of mosquitto_pub per message. ceiling: raw / (raw + built + stored + sent), the most any")
print("gateway that commits each reading before sending it as its own QoS 1 message through libmosquitto could reach.")
print("algorithm   record bytes   raw signature   built   stored    sent   ceiling   target 0.60")
var batchedFloors: [String] = []
var ceilings: [String: Double] = [:]
for floor in floors {
    let messages = max(10_000, min(options.meters * options.intervals, 50_000))
    let sent = try mosquittoPubCPUPerMessage(port: port, payload: floor.record, count: messages) * 1e6
    let stored = try await storageFloor(record: floor.record, count: messages) * 1e6
    let ceiling = floor.rawSign / (floor.rawSign + floor.build + stored + sent)
    ceilings[floor.label] = ceiling
    print(floor.label.padding(toLength: 9, withPad: " ", startingAt: 0)
          + String(format: " %14d %15.1f %7.1f %8.1f %7.1f %9.2f", floor.record.count, floor.rawSign, floor.build, stored, sent, ceiling)
          + "   " + (ceiling >= 0.6 ? "within reach" : "out of reach"))
    // The same floors under the contract changes that would lower them: every meter's record of one interval sent
    // as one MQTT message (the records joined by ','), and stored as one row.
    let batch = options.meters
    let batchPayload = Array(repeatElement(floor.record, count: batch).joined(separator: [UInt8(ascii: ",")]))
    let sentBatched = try mosquittoPubCPUPerMessage(port: port, payload: batchPayload, count: max(100, messages / batch)) * 1e6 / Double(batch)
    let storedBatched = try await storageFloor(record: floor.record, count: messages, recordsPerRow: batch) * 1e6
    func line(_ what: String, _ stored: Double, _ sent: Double) -> String {
        let ceiling = floor.rawSign / (floor.rawSign + floor.build + stored + sent)
        return floor.label.padding(toLength: 9, withPad: " ", startingAt: 0) + " " + what.padding(toLength: 44, withPad: " ", startingAt: 0)
            + String(format: " %7.1f %7.1f %9.2f", stored, sent, ceiling) + "   " + (ceiling >= 0.6 ? "within reach" : "out of reach")
    }
    batchedFloors.append(line("\(batch) readings a message, a row per record", stored, sentBatched))
    batchedFloors.append(line("a message per reading, \(batch) records a row", storedBatched, sent))
    batchedFloors.append(line("\(batch) readings a message, \(batch) records a row", storedBatched, sentBatched))
}
print("")
print("the same floors if the contract changed (DESIGN.md today: one record per <meter>/reading message, one row per record):")
print("the records of one interval's burst sent as one QoS 1 message (mosquitto_pub -l, CPU per message / records in it) and")
print("stored as one row (the same append, rows of \(options.meters) records). Ceilings only: accounting, claims, delivered marks")
print("and the rest of the gateway's work per reading come on top, as in the rows above.")
print("algorithm contract change                                 stored    sent   ceiling   target 0.60")
for line in batchedFloors { print(line) }
print("")
// How much of what this design allows the gateway reaches: its own work per reading, apart from the floors.
print("end to end against the ceiling (today's contract): the ratio of the first table / the ceiling of the floors table,")
print("how much of what any gateway of this design could reach this one reaches (1.00: nothing but the floors)")
print("algorithm, self-check     ratio   ceiling   share")
for entry in ratios {
    guard let ceiling = ceilings[entry.algorithm] else { continue }
    print("\(entry.algorithm), \(entry.selfCheck ? "on" : "off")".padding(toLength: 21, withPad: " ", startingAt: 0)
          + String(format: " %9.2f %9.2f %7.2f", entry.ratio, ceiling, entry.ratio / ceiling) + " of the ceiling")
}
