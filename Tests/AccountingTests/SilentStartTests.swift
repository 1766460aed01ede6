import Accounting
import Foundation
import MeterCore
import Testing

/// A source that never answered still has a stream: each interval that ends before its first reading is a gap
/// with no samples and totals 0, and the first reading sets the baseline without overlapping them.
@Suite(.timeLimit(.minutes(2))) struct SilentStartTests {
    @Test func aCounterThatNeverAnsweredClosesEachIntervalAsAGap() throws {
        var meter = CounterAccountant(configuration: .init(settings: settings("m1"), scale: .wattHours(1), ratedPowerWatts: 50_000))
        // The gateway starts 5 minutes into an interval; the meter stays silent for three more intervals.
        #expect(meter.tick(now: at(5 * minute)).isEmpty)
        var closed: [AccountedInterval] = []
        for m in Int64(6)...50 { closed += meter.tick(now: at(m * minute)) }
        #expect(closed.count == 3, "the interval it started in and two whole ones: \(closed.results.map(\.startMillis))")
        for (n, interval) in closed.enumerated() {
            let r = interval.result
            #expect(r.startMillis == (newYear2026 + Int64(n) * 15 * minute) / 1_000_000 && r.endMillis - r.startMillis == 900_000)
            #expect(r.quality == .gap && r.sampleCount == 0 && r.importTotal == .zero && r.importDelta == .zero && r.averagePowerWatts == 0)
        }
        // The first reading at 50 min: the baseline, in the open interval; nothing overlaps the gaps.
        #expect(try meter.add(.init(time: at(50 * minute), importCount: 1_000_000)).isEmpty)
        let after = try meter.add(.init(time: at(61 * minute), importCount: 1_000_100)).results
        #expect(after.map(\.startMillis) == [(newYear2026 + 45 * minute) / 1_000_000])
        #expect(after.first?.quality == .gap, "the part before the first reading has no data")
        #expect(after.first?.importTotal == MilliwattHours(1_000_000_000 + 100_000 * 10 / 11), "\(after)")
    }

    /// The silent start is saved: after a restart it goes on where it was, signing no interval twice.
    @Test func aRestartGoesOnFromTheSavedSilentStart() throws {
        let configuration = CounterAccountant.Configuration(settings: settings("m1"), scale: .wattHours(1), ratedPowerWatts: 50_000)
        var meter = CounterAccountant(configuration: configuration)
        _ = meter.tick(now: at(1 * minute))
        #expect(meter.tick(now: at(16 * minute)).count == 1)
        let saved = try #require(meter.snapshot().jsonBytes)
        let snapshot = try AccountingState.decoder().decode(CounterAccountant.Snapshot.self, from: Data(saved))
        var restarted = try CounterAccountant(configuration: configuration, restoring: snapshot)
        let next = restarted.tick(now: at(46 * minute))
        #expect(next.results.map(\.startMillis) == [(newYear2026 + 15 * minute) / 1_000_000, (newYear2026 + 30 * minute) / 1_000_000])
    }

    @Test func aPowerRailThatNeverAnsweredClosesEachIntervalAsAGap() throws {
        var rail = PowerAccountant(settings: settings("gpu0", source: .gpu, periodMillis: 60_000))
        _ = rail.tick(now: at(30 * second))
        let closed = rail.tick(now: at(3 * minute + 5 * second))
        #expect(closed.results.map(\.quality) == [.gap, .gap, .gap] && closed.results.allSatisfy { $0.source == .gpu && $0.sampleCount == 0 })
        #expect(try rail.add(.init(time: at(3 * minute + 10 * second), powerWatts: 100)).isEmpty)
        let first = try rail.add(.init(time: at(4 * minute + 10 * second), powerWatts: 100)).results
        #expect(first.map(\.startMillis) == [(newYear2026 + 3 * minute) / 1_000_000])
    }
}
