import Accounting
import Foundation
import MeterCore
import TestSupport
import Testing

/// 2026-01-01T00:00:00Z in nanoseconds.
let newYear2026: Int64 = 1_767_225_600 * 1_000_000_000
let second: Int64 = 1_000_000_000
let minute: Int64 = 60 * second

/// A time `offset` after 2026-01-01 on both clocks, with the wall clock `wallShift` away from where the
/// monotonic clock says it should be (a clock step shows up as a change of `wallShift`).
func at(_ offset: Int64, wallShift: Int64 = 0, bootOffset: UInt64 = 5_000 * 1_000_000_000) -> Timestamp {
    Timestamp(wallNanos: newYear2026 + offset + wallShift, monotonicNanos: bootOffset + UInt64(offset))
}

func meterID(_ name: String) -> MeterID { try! MeterID(validating: name) }

func settings(_ name: String, source: SourceKind = .modbus, periodMillis: Int64 = 900_000,
              maximumGap: Int64 = 5 * minute) -> SourceSettings {
    SourceSettings(meter: meterID(name), source: source, grid: try! IntervalGrid(periodMillis: periodMillis),
                   maximumGapNanos: maximumGap)
}


/// Checks what every stream of results must satisfy: consecutive intervals, no negative energy, and
/// cumulative totals that move by exactly the deltas.
func expectConsistent(_ results: [IntervalResult], periodMillis: Int64 = 900_000,
                      sourceLocation: SourceLocation = #_sourceLocation) {
    for (previous, result) in zip(results, results.dropFirst()) {
        #expect(result.startMillis == previous.endMillis, "intervals must follow each other", sourceLocation: sourceLocation)
        #expect(result.importTotal - previous.importTotal == result.importDelta, sourceLocation: sourceLocation)
        #expect(result.exportTotal - previous.exportTotal == result.exportDelta, sourceLocation: sourceLocation)
    }
    for result in results {
        #expect(result.endMillis - result.startMillis == periodMillis, sourceLocation: sourceLocation)
        #expect(result.startMillis % periodMillis == 0, sourceLocation: sourceLocation)
        #expect(result.importDelta >= .zero && result.exportDelta >= .zero, sourceLocation: sourceLocation)
    }
}

func sum(_ results: [IntervalResult], _ key: KeyPath<IntervalResult, MilliwattHours>) -> Int64 {
    results.reduce(0) { $0 + $1[keyPath: key].rawValue }
}

extension Array where Element == AccountedInterval {
    var results: [IntervalResult] { map(\.result) }
}
