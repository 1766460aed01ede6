import Accounting
import Foundation
import MeterCore
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct PowerAccountantTests {
    @Test func aYearOfVaryingPowerIntegratesExactly() throws {
        var rng = SplitMix64(seed: 7)
        var rail = PowerAccountant(settings: settings("gpu0", source: .gpu))
        let year = 365 * 24 * 60 * minute
        var milliwatts: Int64 = 300_000
        var expected: UInt128 = 0 // Σ (P₁ + P₂)·Δt in µW·ns, computed independently of the accountant
        var results: [IntervalResult] = []
        results += try rail.add(.init(time: at(0), powerWatts: Double(milliwatts) / 1000)).results
        var t: Int64 = 0
        while t < year {
            var next = t + 2 * minute + Int64.random(in: -40...40, using: &rng) * second
            next = min(max(next, t + second), year)
            let previous = milliwatts
            milliwatts = min(700_000, max(0, milliwatts + Int64.random(in: -20_000...20_000, using: &rng)))
            expected += UInt128((previous + milliwatts) * 1000) * UInt128(next - t)
            results += try rail.add(.init(time: at(next), powerWatts: Double(milliwatts) / 1000)).results
            t = next
        }
        #expect(results.count == 365 * 96)
        expectConsistent(results)
        #expect(rail.totals?.imported.units == expected)
        let wholeMilliwattHours = Int64(expected / FineEnergy.unitsPerMilliwattHour)
        #expect(sum(results, \.importDelta) == wholeMilliwattHours)
        #expect(results.last?.importTotal.rawValue == wholeMilliwattHours)
        #expect(results.allSatisfy { $0.quality == .estimated })
    }

    @Test func constantPowerDoesNotDriftOverAMonth() throws {
        var rail = PowerAccountant(settings: settings("rail", source: .hwmon))
        var results: [IntervalResult] = []
        var t: Int64 = 0
        while t <= 30 * 24 * 60 * minute {
            results += try rail.add(.init(time: at(t), powerWatts: 1234.5678)).results
            t += 10 * second
        }
        // 1234.5678 W × 15 min = 308 641.95 mWh: the deltas alternate between 308 641 and 308 642 and add up.
        #expect(results.count == 30 * 96)
        #expect(results.allSatisfy { $0.importDelta == 308_641 || $0.importDelta == 308_642 })
        #expect(sum(results, \.importDelta) == 888_888_816)
        #expect(results.last?.importTotal == 888_888_816)
        #expect(abs(results[5].averagePowerWatts - 1234.5678) < 0.01)
        #expect(abs(results[5].peakPowerWatts - 1234.5678) < 1e-9)
    }

    @Test func aGapLongerThanTheLimitIsNotBridged() throws {
        var rail = PowerAccountant(settings: settings("gpu0", source: .gpu, maximumGap: 5 * minute))
        for m in 0...10 { _ = try rail.add(.init(time: at(Int64(m) * minute), powerWatts: 600)) }
        let closed = try rail.add(.init(time: at(40 * minute), powerWatts: 600))
        #expect(closed.results.map(\.importDelta) == [100_000, 0])
        #expect(closed.results.allSatisfy { $0.quality == .gap })
        #expect(closed.results.map(\.sampleCount) == [11, 0])
        let next = try rail.add(.init(time: at(45 * minute), powerWatts: 600))
        #expect(next.first?.result.importDelta == 50_000) // only 40…45 was seen
        #expect(next.first?.result.quality == .gap)
        #expect(next.first?.events.contains(.gap(nanoseconds: 30 * minute)) == true)
    }

    @Test func aRampThroughZeroSplitsIntoImportAndExport() throws {
        var rail = PowerAccountant(settings: settings("net", source: .hwmon, maximumGap: 20 * minute))
        _ = try rail.add(.init(time: at(0), powerWatts: 1000))
        let closed = try rail.add(.init(time: at(15 * minute), powerWatts: -1000))
        let result = try #require(closed.first?.result)
        #expect(result.importDelta == 62_500)
        #expect(result.exportDelta == 62_500)
        #expect(result.averagePowerWatts == 0)
        #expect(result.peakPowerWatts == 1000)
    }

    @Test func aWallClockStepForwardLeavesAnEmptyGapAndKeepsTheEnergy() throws {
        var rail = PowerAccountant(settings: settings("gpu0", source: .gpu))
        var results: [AccountedInterval] = []
        for m in Int64(0)...120 {
            results += try rail.add(.init(time: at(m * minute, wallShift: m > 20 ? 60 * minute : 0), powerWatts: 1000))
        }
        expectConsistent(results.results)
        #expect(results.count == 12) // 0:00 … 3:00 on the wall clock
        #expect(sum(results.results, \.importDelta) == 2_000_000) // 120 monotonic minutes at 1 kW
        let skipped = results.results.filter { $0.importDelta == .zero }
        #expect(skipped.count == 3 && skipped.allSatisfy { $0.quality == .gap })
        #expect(results.contains { $0.events.contains(.clockStep(nanoseconds: 60 * minute)) })
    }

    @Test func aWallClockStepBackNeverReopensAnIntervalNorLosesEnergy() throws {
        var meter = CounterAccountant(configuration: .init(settings: settings("m1"), scale: .wattHours(1), ratedPowerWatts: 50_000))
        var results: [AccountedInterval] = []
        for m in Int64(0)...70 {
            results += try meter.add(.init(time: at(m * minute, wallShift: m > 20 ? -10 * minute : 0), importCount: UInt64(1000 + 10 * m)))
        }
        expectConsistent(results.results)
        #expect(results.count == 4) // 0:00 … 1:00 on the wall clock, which reads 1:00 at monotonic 70 min
        #expect(sum(results.results, \.importDelta) == 700_000) // 70 monotonic minutes at 10 Wh a minute
        #expect(results[1].result.importDelta == 250_000) // 15…30 on the label axis took monotonic 15…40
        #expect(results[1].result.quality == .estimated)
        #expect(results[1].events.contains(.clockStep(nanoseconds: -10 * minute)))
    }
}
