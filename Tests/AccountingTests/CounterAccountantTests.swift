import Accounting
import Foundation
import MeterCore
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct CounterAccountantTests {
    func accountant(range: CounterRange = .bits(64), export: Bool = false, rated: Double? = 50_000,
                    afterReset: CounterAccountant.ResetPolicy = .rebase, maximumGap: Int64 = 5 * minute) -> CounterAccountant {
        CounterAccountant(configuration: .init(
            settings: settings("m1", maximumGap: maximumGap), scale: .wattHours(1), range: range,
            hasExportCounter: export, ratedPowerWatts: rated, afterReset: afterReset))
    }

    @Test func aYearOfJitteredPollsAddsUpToTheCounterDifferenceExactly() throws {
        var rng = SplitMix64(seed: 42)
        var meter = accountant()
        let year = 365 * 24 * 60 * minute
        var trueWattHours = 123_456_789.0 // the meter's register at the start
        var watts = 8_000.0
        let firstCount = UInt64(trueWattHours)
        var results: [IntervalResult] = []
        var lastCount = firstCount
        var t: Int64 = 0
        results += try meter.add(.init(time: at(0), importCount: firstCount)).results
        while t < year {
            // Polls every two minutes, up to 40 s early or late; the last one lands on the year's end.
            var next = t + 2 * minute + Int64.random(in: -40...40, using: &rng) * second
            next = min(max(next, t + second), year)
            watts = min(20_000, max(0, watts + Double.random(in: -500...500, using: &rng)))
            trueWattHours += watts * Double(next - t) / 3.6e12
            lastCount = UInt64(trueWattHours)
            results += try meter.add(.init(time: at(next), importCount: lastCount)).results
            t = next
        }
        #expect(results.count == 365 * 96)
        #expect(results.first?.startMillis == newYear2026 / 1_000_000)
        expectConsistent(results)
        #expect(sum(results, \.importDelta) == Int64(lastCount - firstCount) * 1000)
        #expect(results.last?.importTotal == MilliwattHours(Int64(lastCount) * 1000))
        #expect(results.allSatisfy { $0.quality <= .interpolated })
        #expect(results.contains { $0.quality == .interpolated })
        #expect(sum(results, \.exportDelta) == 0)
    }

    @Test func aBoundaryBetweenPollsIsInterpolatedAndFlagged() throws {
        var meter = accountant(maximumGap: 20 * minute)
        _ = try meter.add(.init(time: at(0), importCount: 1_000))
        _ = try meter.add(.init(time: at(13 * minute), importCount: 1_013))
        // 14:00 … 16:00 past the hour (relative), counter +4 Wh: the boundary at 15:00 takes 2 Wh each side.
        _ = try meter.add(.init(time: at(14 * minute), importCount: 1_014))
        let closed = try meter.add(.init(time: at(16 * minute), importCount: 1_018))
        #expect(closed.count == 1)
        let first = try #require(closed.first?.result)
        #expect(first.importDelta == 16_000)
        #expect(first.importTotal == 1_016_000)
        #expect(first.quality == .interpolated)
        #expect(first.sampleCount == 3)
        // A poll on the next boundary: measured there, but the start of this one was interpolated.
        let second = try meter.add(.init(time: at(30 * minute), importCount: 1_030))
        #expect(second.results.map(\.importDelta) == [14_000])
        #expect(second.first?.result.quality == .interpolated)
        let third = try meter.add(.init(time: at(45 * minute), importCount: 1_045))
        #expect(third.first?.result.quality == .measured)
        #expect(third.first?.result.averagePowerWatts == 60)
    }

    @Test func aRolloverAtTheRegisterWidthIsPaid() throws {
        var meter = accountant(range: .bits(32), maximumGap: 20 * minute)
        let top: UInt64 = (1 << 32) - 10
        _ = try meter.add(.init(time: at(0), importCount: top))
        let closed = try meter.add(.init(time: at(15 * minute), importCount: 20))
        let interval = try #require(closed.first)
        #expect(interval.result.importDelta == 30_000)
        #expect(interval.result.quality == .measured)
        #expect(interval.events.contains(.rollover(counts: 30)))
    }

    @Test func aResetIsNotPaidAndNeverNegative() throws {
        var meter = accountant(range: .bits(32), maximumGap: 20 * minute)
        _ = try meter.add(.init(time: at(0), importCount: 5_000_000))
        _ = try meter.add(.init(time: at(5 * minute), importCount: 5_000_100))
        // Meter replaced: the new one starts at 200 Wh. Far from the top of 32 bits, so not a wrap.
        let afterReset = try meter.add(.init(time: at(10 * minute), importCount: 200))
        #expect(afterReset.isEmpty)
        let closed = try meter.add(.init(time: at(15 * minute), importCount: 300))
        let interval = try #require(closed.first)
        #expect(interval.result.importDelta == 200_000) // 100 before the reset, 100 after; the step itself unpaid
        #expect(interval.result.quality == .gap)
        #expect(interval.events.contains(.reset(from: 5_000_100, to: 200, paidCounts: 0)))
        let next = try meter.add(.init(time: at(30 * minute), importCount: 400))
        #expect(next.first?.result.importDelta == 100_000)
        #expect(next.first?.result.quality == .measured)
    }

    @Test func aCounterThatRestartsFromZeroPaysWhatItCountedSince() throws {
        var meter = accountant(range: .bits(64), afterReset: .countFromZero)
        _ = try meter.add(.init(time: at(0), importCount: 9_000))
        let closed = try meter.add(.init(time: at(15 * minute), importCount: 50))
        let interval = try #require(closed.first)
        #expect(interval.result.importDelta == 50_000)
        #expect(interval.events.contains(.reset(from: 9_000, to: 50, paidCounts: 50)))
        #expect(interval.result.quality == .gap)
    }

    @Test func anImplausibleJumpIsFlaggedNotPaid() throws {
        var meter = accountant(rated: 10_000) // 10 kW: at most 2.5 kWh in 15 minutes
        _ = try meter.add(.init(time: at(0), importCount: 1_000))
        _ = try meter.add(.init(time: at(5 * minute), importCount: 1_500))
        let closed = try meter.add(.init(time: at(15 * minute), importCount: 900_000))
        let interval = try #require(closed.first)
        #expect(interval.result.importDelta == 500_000)
        #expect(interval.result.quality == .gap)
        #expect(interval.events.contains { if case .implausibleIncrease(counts: 898_500, _) = $0 { true } else { false } })
        let next = try meter.add(.init(time: at(30 * minute), importCount: 900_100))
        #expect(next.first?.result.importDelta == 100_000)
        #expect(next.first?.result.importTotal == MilliwattHours(1_000_000 + 500_000 + 100_000))
    }

    @Test func importAndExportCountersAreKeptApart() throws {
        var meter = accountant(export: true)
        _ = try meter.add(.init(time: at(0), importCount: 100, exportCount: 7))
        let closed = try meter.add(.init(time: at(15 * minute), importCount: 110, exportCount: 37))
        let result = try #require(closed.first?.result)
        #expect(result.importDelta == 10_000 && result.exportDelta == 30_000)
        #expect(result.exportTotal == 37_000)
        #expect(result.averagePowerWatts == -80)
        #expect(throws: AccountingError.exportChannelMismatch(meter: meterID("m1"), configured: true)) {
            try meter.add(.init(time: at(16 * minute), importCount: 111))
        }
    }

    @Test func theExportCounterRollsOverAndResetsOnItsOwn() throws {
        var meter = accountant(range: .bits(16), export: true, maximumGap: 20 * minute)
        _ = try meter.add(.init(time: at(0), importCount: 100, exportCount: 65_530))
        let wrapped = try meter.add(.init(time: at(15 * minute), importCount: 110, exportCount: 4))
        #expect(wrapped.first?.result.exportDelta == 10_000)
        #expect(wrapped.first?.result.importDelta == 10_000)
        #expect(wrapped.first?.events == [.rollover(counts: 10)])
        let reset = try meter.add(.init(time: at(30 * minute), importCount: 120, exportCount: 3))
        #expect(reset.first?.result.exportDelta == .zero)
        #expect(reset.first?.result.importDelta == 10_000)
        #expect(reset.first?.events == [.reset(from: 4, to: 3, paidCounts: 0)])
    }

    @Test func aCounterKeepsItsEnergyAcrossAWallClockStepForward() throws {
        var meter = accountant()
        var results: [AccountedInterval] = []
        for m in Int64(0)...60 {
            results += try meter.add(.init(time: at(m * minute, wallShift: m >= 31 ? 2 * 60 * minute : 0), importCount: UInt64(20 * m)))
        }
        expectConsistent(results.results)
        #expect(sum(results.results, \.importDelta) == 1_200_000)
        // 30:00 … 2:30:00 on the wall clock saw no time pass: eight empty gap intervals, then the energy goes on.
        let empty = results.results.filter { $0.importDelta == .zero }
        #expect(empty.count == 8 && empty.allSatisfy { $0.quality == .gap })
        // The sample after the step reached its interval before any silence tick: that interval is flagged too.
        let stepped = results.filter { $0.events.contains(.clockStep(nanoseconds: 2 * 60 * minute)) }
        #expect(stepped.count == 1 && stepped.allSatisfy { $0.result.quality == .estimated }, "\(stepped.map(\.result.quality))")
    }

    /// The other order, as the gateway's tick can make it: after the step forward, silence ticks close the skipped
    /// intervals before the next sample arrives. The interval that sample lands in carries the step and is flagged.
    @Test func aStepForwardIsFlaggedWhenTicksClosedTheSkippedTimeFirst() throws {
        var meter = accountant()
        var results: [AccountedInterval] = []
        for m in Int64(0)...30 { results += try meter.add(.init(time: at(m * minute), importCount: UInt64(20 * m))) }
        // Six silent monotonic minutes (more than the 5-minute gap limit) later the wall clock reads two hours more;
        // the tick sees it before the next poll does and closes the skipped intervals as gaps.
        let ticked = meter.tick(now: at(36 * minute, wallShift: 2 * 60 * minute))
        #expect(!ticked.isEmpty && ticked.allSatisfy { $0.result.quality == .gap })
        results += ticked
        for m in Int64(37)...60 {
            results += try meter.add(.init(time: at(m * minute, wallShift: 2 * 60 * minute), importCount: UInt64(20 * m)))
        }
        expectConsistent(results.results)
        #expect(sum(results.results, \.importDelta) == 1_200_000)
        let stepped = results.filter { $0.events.contains(where: \.isClockStep) }
        #expect(stepped.count == 1 && stepped.allSatisfy { $0.result.quality >= .estimated }, "\(stepped.map(\.result.quality))")
    }

    /// The fault suite's step back (faults/faultsuite.py, scenario_clock) in small: the wall clock goes back 90 s
    /// just after a boundary, behind the end of the interval already closed. Nothing is booked before that end
    /// (no overlap), the energy of the stalled time goes into the open interval, which is flagged with the
    /// step and closes once the wall clock has caught up; the counter difference is paid exactly.
    @Test func aCounterStepBackBooksIntoTheOpenIntervalWithoutOverlap() throws {
        var meter = accountant()
        var results: [AccountedInterval] = []
        for tenSeconds in Int64(0)...192 {
            let t = tenSeconds * 10 * second
            results += try meter.add(.init(time: at(t, wallShift: t >= 15 * minute + 10 * second ? -90 * second : 0), importCount: UInt64(tenSeconds)))
        }
        #expect(results.count == 2)
        expectConsistent(results.results)
        let stepped = try #require(results.last)
        // From a counter of 0: every mWh up to the stepped interval's end is paid in the two intervals.
        #expect(sum(results.results, \.importDelta) == stepped.result.importTotal.rawValue)
        #expect(stepped.result.importDelta.rawValue > 0)
        #expect(stepped.result.startMillis == newYear2026 / 1_000_000 + 900_000)
        #expect(stepped.result.quality == .estimated)
        #expect(stepped.events.contains(.clockStep(nanoseconds: -90 * second)))
        #expect(stepped.events.contains(.lateEnergy))
    }

    @Test func wallClockStepsAreMeasuredAgainstTheMonotonicClock() {
        #expect(wallClockStep(from: at(0), to: at(second, wallShift: 3_600 * second), toleranceNanos: 2 * second) == 3_600 * second)
        #expect(wallClockStep(from: at(0), to: at(second, wallShift: -90 * second), toleranceNanos: 2 * second) == -90 * second)
        #expect(wallClockStep(from: at(0), to: at(second, wallShift: second), toleranceNanos: 2 * second) == nil)
        #expect(wallClockStep(from: at(0), to: at(second, bootOffset: 0), toleranceNanos: 2 * second) == nil)
    }

    @Test func aPollingOutageIsSpreadAndFlaggedAsGap() throws {
        var meter = accountant()
        _ = try meter.add(.init(time: at(0), importCount: 0))
        _ = try meter.add(.init(time: at(10 * minute), importCount: 100))
        // No polls for 50 minutes; the counter shows 500 Wh over that time.
        let closed = try meter.add(.init(time: at(60 * minute), importCount: 600))
        #expect(closed.count == 4)
        expectConsistent(closed.results)
        #expect(closed.results.map(\.importDelta) == [150_000, 150_000, 150_000, 150_000])
        #expect(closed.results.allSatisfy { $0.quality == .gap })
        #expect(closed.last?.events.contains(.gap(nanoseconds: 50 * minute)) == true)
    }

    @Test func silentIntervalsCloseAsGapsAndLateEnergyIsNotLost() throws {
        var meter = accountant()
        _ = try meter.add(.init(time: at(0), importCount: 0))
        _ = try meter.add(.init(time: at(10 * minute), importCount: 100))
        #expect(meter.tick(now: at(12 * minute)).isEmpty) // within the gap limit: wait
        let silent = meter.tick(now: at(31 * minute))
        #expect(silent.results.map(\.startMillis) == [newYear2026 / 1_000_000, newYear2026 / 1_000_000 + 900_000])
        #expect(silent.results.allSatisfy { $0.quality == .gap })
        // The counter comes back: what it counted during the silence goes into the open interval.
        let back = try meter.add(.init(time: at(45 * minute), importCount: 700))
        let result = try #require(back.first)
        #expect(result.result.importDelta == 600_000)
        #expect(result.events.contains(.lateEnergy))
        #expect(meter.totals?.imported == CounterScale.wattHours(1).energy(ofCount: 700))
    }

    @Test func outOfOrderInputIsRefusedAndChangesNothing() throws {
        var meter = accountant()
        _ = try meter.add(.init(time: at(10 * minute), importCount: 10))
        let before = meter.snapshot()
        #expect(throws: AccountingError.self) { try meter.add(.init(time: at(5 * minute), importCount: 11)) }
        #expect(throws: AccountingError.self) { try meter.add(.init(time: at(11 * minute), importCount: 11, powerWatts: .nan)) }
        #expect(meter.snapshot() == before)
    }
}
