// Outbox benchmark: append rate, end-to-end publish rate with PUBACK, backlog drain and peak RSS,
// each as a ratio to a plain mosquitto_pub | mosquitto_sub loop measured in the same run on the same broker.
//
//   swift run -c release OutboxBench [--backlog 1000000] [--records 20000] [--window 256] [--size 512]
//   swift run -c release OutboxBench --flash-kept 2880 [--flash-meters 100] [--flash-intervals 100]
//
// Needs mosquitto, mosquitto_pub and mosquitto_sub on PATH (scripts/apt-packages.txt).
import Delivery
import BenchSupport
import MeterCore
import Dispatch
import Foundation
import MQTT
import Outbox

struct Options {
    var backlog = 1_000_000
    var records = 20_000
    var window = 256
    var size = 512
    /// With a value above 0: the flash benchmark only (Flash.swift), an outbox already holding this many intervals.
    var flashKept = 0
    var flashMeters = 100
    var flashIntervals = 100
    var flashStateBytes = 500

    init(_ arguments: [String]) {
        var i = 1
        while i + 1 < arguments.count {
            let value = Int(arguments[i + 1]) ?? 0
            switch arguments[i] {
            case "--backlog": backlog = value
            case "--records": records = value
            case "--window": window = value
            case "--size": size = value
            case "--flash-kept": flashKept = value
            case "--flash-meters": flashMeters = value
            case "--flash-intervals": flashIntervals = value
            case "--flash-state-bytes": flashStateBytes = value
            default: fatalError("unknown option \(arguments[i])")
            }
            i += 2
        }
    }
}

let options = Options(CommandLine.arguments)
if options.flashKept > 0 {
    try await flashBenchmark(meters: options.flashMeters, kept: options.flashKept, intervals: options.flashIntervals, stateBytes: options.flashStateBytes)
    exit(0)
}
let payload = String(repeating: "r", count: max(0, options.size - 80))

/// Any bytes with any 32-byte hash (the benchmark measures storage and transport, not signing).
func benchRecord(_ meter: String) -> RecordBuilder {
    { position in
        let bytes = Array("\(meter)|\(position.epoch)|\(position.seq)|\(payload)".utf8)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let hash = (0..<4).flatMap { i in withUnsafeBytes(of: h &+ UInt64(i)) { Array($0) } }
        return (bytes, hash)
    }
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

/// Peak resident set size of this process since the last reset, in MiB (Linux `VmHWM`).
func peakRSS() -> Double {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
    return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0: write 5 to clear_refs).
func resetPeakRSS() { try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8) }

/// Waits until a subscriber process has received its count (`-C`) and exited.
func waitForExit(_ p: Process, timeout: Double) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(2000) }
    return !p.isRunning
}

let work = NSTemporaryDirectory() + "outbox-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }
let (broker, port) = try startMosquitto(in: work)
defer { broker.terminate() }
let sub = which("mosquitto_sub"), pub = which("mosquitto_pub")
print("outbox benchmark: \(options.records) records end to end, backlog \(options.backlog), window \(options.window), record ~\(options.size) B, \(ProcessInfo.processInfo.activeProcessorCount) cores")

// 1. The baseline: mosquitto_pub -l (QoS 1, one message per line) into mosquitto_sub -C N.
func baseline(count: Int) throws -> Double {
    let topic = "bench/baseline/\(count)"
    let receiver = try launch(sub, ["-h", "127.0.0.1", "-p", "\(port)", "-q", "1", "-t", topic, "-C", "\(count)"])
    usleep(300_000)
    let input = Pipe()
    let start = ContinuousClock.now
    let sender = try launch(pub, ["-h", "127.0.0.1", "-p", "\(port)", "-q", "1", "-t", topic, "-l"], stdin: input)
    let line = Data((payload + "\n").utf8)
    var chunk = Data()
    for _ in 0..<1000 { chunk.append(line) }
    for _ in 0..<(count / 1000) { input.fileHandleForWriting.write(chunk) }
    try input.fileHandleForWriting.close()
    guard waitForExit(receiver, timeout: 600) else { fatalError("baseline subscriber did not get \(count) messages") }
    let rate = Double(count) / seconds(ContinuousClock.now - start)
    sender.waitUntilExit()
    return rate
}
let baselineRate = try baseline(count: max(1000, options.records / 1000 * 1000))
print(String(format: "baseline  mosquitto_pub -l | mosquitto_sub, QoS 1:      %9.0f records/s  (1.00)", baselineRate))

// 2. Append rate: one record per transaction (each fsynced: synchronous=FULL), and 100 per transaction.
do {
    let store = try await SQLiteOutbox.open(path: "\(work)/append.sqlite", configuration: OutboxConfiguration(quotaBytes: 1 << 40))
    let singles = min(2000, options.records)
    var start = ContinuousClock.now
    for i in 0..<singles { _ = try await store.append(meter: "m\(i % 4)", benchRecord("m\(i % 4)")) }
    let singleRate = Double(singles) / seconds(ContinuousClock.now - start)
    start = .now
    for i in 0..<(options.records / 100) {
        _ = try await store.append((0..<100).map { j in AppendRequest(meter: "m\((i + j) % 4)", build: benchRecord("m\((i + j) % 4)")) })
    }
    let batchRate = Double(options.records / 100 * 100) / seconds(ContinuousClock.now - start)
    print(String(format: "append    1 record per fsynced transaction:         %9.0f records/s  (%.2f)", singleRate, singleRate / baselineRate))
    print(String(format: "append    100 records per fsynced transaction:      %9.0f records/s  (%.2f)", batchRate, batchRate / baselineRate))
    await store.close()
}

/// Runs a publisher until `count` records are delivered and a mosquitto_sub peer has them all.
func drain(_ store: SQLiteOutbox, count: Int, gateway: String, appendLive: Int = 0, subscriber: Bool = true) async throws -> (rate: Double, peakMiB: Double) {
    let topics = MeterGateTopics(gateway: gateway)
    let receiver = subscriber ? try launch(sub, ["-h", "127.0.0.1", "-p", "\(port)", "-q", "1", "-t", "metergate/v1/\(gateway)/+/reading", "-C", "\(count)"]) : nil
    usleep(300_000)
    let client = MQTTClient(configuration: MQTTClientConfiguration(host: "127.0.0.1", port: port, clientID: gateway, maxInflight: options.window))
    let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics),
                                    configuration: .init(window: options.window, acceptReplayRequests: false))
    resetPeakRSS()
    let start = ContinuousClock.now
    let running = Task { try await publisher.run() }
    if appendLive > 0 {
        for i in 0..<(appendLive / 100) {
            _ = try await store.append((0..<100).map { j in AppendRequest(meter: "m\((i + j) % 4)", build: benchRecord("m\((i + j) % 4)")) })
            publisher.recordsAppended()
        }
    }
    while await publisher.counters.delivered < count { try await Task.sleep(for: .milliseconds(5)) }
    if let receiver, !waitForExit(receiver, timeout: 600) { fatalError("subscriber did not get \(count) records") }
    let rate = Double(count) / seconds(ContinuousClock.now - start)
    let peak = peakRSS()
    running.cancel()
    try await running.value
    return (rate, peak)
}

// 3. End to end: records appended (100 per transaction) while the publisher sends them, until PUBACK and the peer has them.
do {
    let store = try await SQLiteOutbox.open(path: "\(work)/e2e.sqlite", configuration: OutboxConfiguration(quotaBytes: 1 << 40))
    let result = try await drain(store, count: options.records, gateway: "e2e", appendLive: options.records)
    print(String(format: "e2e       append + publish + PUBACK, window %4d:    %9.0f records/s  (%.2f)", options.window, result.rate, result.rate / baselineRate))
    await store.close()
}

// 4. Backlog drain: fill the outbox while disconnected, then drain; peak RSS for a small and the full backlog.
func backlog(_ count: Int, name: String, subscriber: Bool = true) async throws -> (rate: Double, peakMiB: Double, fillRate: Double) {
    let store = try await SQLiteOutbox.open(path: "\(work)/\(name).sqlite", configuration: OutboxConfiguration(quotaBytes: 1 << 40))
    let start = ContinuousClock.now
    var done = 0
    while done < count {
        let n = min(1000, count - done)
        _ = try await store.append((0..<n).map { j in AppendRequest(meter: "m\((done + j) % 4)", build: benchRecord("m\((done + j) % 4)")) })
        done += n
    }
    let fillRate = Double(count) / seconds(ContinuousClock.now - start)
    let result = try await drain(store, count: count, gateway: name, subscriber: subscriber)
    await store.close()
    try? FileManager.default.removeItem(atPath: "\(work)/\(name).sqlite")
    return (result.rate, result.peakMiB, fillRate)
}
let small = try await backlog(max(1000, options.backlog / 10), name: "small")
let large = try await backlog(options.backlog, name: "large")
print(String(format: "fill      %8d pending, 1000 per transaction:   %9.0f records/s  (%.2f)", options.backlog, large.fillRate, large.fillRate / baselineRate))
print(String(format: "drain     %8d pending records:                 %9.0f records/s  (%.2f)  peak RSS %.1f MiB", max(1000, options.backlog / 10), small.rate, small.rate / baselineRate, small.peakMiB))
print(String(format: "drain     %8d pending records:                 %9.0f records/s  (%.2f)  peak RSS %.1f MiB", options.backlog, large.rate, large.rate / baselineRate, large.peakMiB))
let brokerOnly = try await backlog(options.backlog, name: "brokeronly", subscriber: false)
print(String(format: "drain     %8d pending, PUBACK only, no subscriber: %7.0f records/s  (%.2f)  peak RSS %.1f MiB", options.backlog, brokerOnly.rate, brokerOnly.rate / baselineRate, brokerOnly.peakMiB))
print(String(format: "peak RSS while draining, %dx the backlog: %.2fx", options.backlog / max(1000, options.backlog / 10), large.peakMiB / max(small.peakMiB, 0.1)))
print(large.rate >= 25_000 ? "drain target (>= 25000 records/s): met" : "drain target (>= 25000 records/s): NOT met")
