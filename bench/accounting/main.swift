// Accounting throughput: how much CPU a sample costs, and how that compares with persisting the state after it.
// Built by run.sh from the MeterCore and Accounting sources with -O. Figures are from one run on one machine:
// compare the ratios, not the absolute times, across machines.
import Foundation

func nanosNow() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

let start: Int64 = 1_767_225_600 * 1_000_000_000
let samples = 2_000_000
let grid = try! IntervalGrid(periodMillis: 900_000)
let meter = try! MeterID(validating: "bench")
let settings = SourceSettings(meter: meter, source: .modbus, grid: grid)
func at(_ i: Int) -> Timestamp {
    let offset = Int64(i) * 1_000_000_000
    return Timestamp(wallNanos: start + offset, monotonicNanos: 1_000_000_000 + UInt64(offset))
}

var counter = CounterAccountant(configuration: .init(settings: settings, scale: .wattHours(1), ratedPowerWatts: 50_000))
var intervals = 0
var t0 = nanosNow()
for i in 0..<samples { intervals += try! counter.add(.init(time: at(i), importCount: UInt64(i) * 3)).count }
let counterNanos = Double(nanosNow() - t0) / Double(samples)

var power = PowerAccountant(settings: settings)
t0 = nanosNow()
for i in 0..<samples { intervals += try! power.add(.init(time: at(i), powerWatts: 1000 + Double(i % 100))).count }
let powerNanos = Double(nanosNow() - t0) / Double(samples)

// The shipped save path: what the pipeline writes to the outbox (`Snapshot.jsonBytes`, short member names) at
// every state save, and what a restart reads back with (`AccountingState.decoder()`).
let decoder = AccountingState.decoder()
let snapshots = 20_000
var bytes = 0
t0 = nanosNow()
for _ in 0..<snapshots { bytes = counter.snapshot().jsonBytes!.count }
let saveNanos = Double(nanosNow() - t0) / Double(snapshots)
let saved = Data(counter.snapshot().jsonBytes!)
t0 = nanosNow()
for _ in 0..<snapshots { _ = try! decoder.decode(CounterAccountant.Snapshot.self, from: saved) }
let restoreNanos = Double(nanosNow() - t0) / Double(snapshots)

print("samples per source kind:            \(samples) (1 s apart, \(intervals) intervals closed)")
print(String(format: "counter sample:                     %.0f ns", counterNanos))
print(String(format: "power sample:                       %.0f ns (%.2f × a counter sample)", powerNanos, powerNanos / counterNanos))
print(String(format: "state save (snapshot().jsonBytes):  %.0f ns, %d bytes (%.0f × a counter sample)", saveNanos, bytes, saveNanos / counterNanos))
print(String(format: "state restore (AccountingState.decoder()): %.0f ns", restoreNanos))
print(String(format: "sources one core keeps up with at 1 Hz, state saved every sample: %.0f", 1e9 / (counterNanos + saveNanos)))
