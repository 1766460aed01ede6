import Accounting
import Testing

@Suite(.timeLimit(.minutes(5))) struct IntervalGridTests {
    @Test func alignsToUTCBoundaries() throws {
        let grid = try IntervalGrid(periodMillis: 900_000)
        // 2026-11-21T07:52:13.456Z
        let t: Int64 = 1_795_247_533_456
        #expect(grid.start(containing: t) % 900_000 == 0)
        #expect(grid.start(containing: t) <= t && t < grid.end(containing: t))
        #expect(grid.start(containing: grid.start(containing: t)) == grid.start(containing: t))
        #expect(grid.start(containing: -1) == -900_000)
    }

    @Test func rejectsPeriodsThatDriftOffTheHour() {
        #expect(throws: IntervalGrid.Problem.notDividingAnHour(7_000)) { try IntervalGrid(periodMillis: 7_000) }
        #expect(throws: IntervalGrid.Problem.outOfRange(500)) { try IntervalGrid(periodMillis: 500) }
    }

    @Test func tellsRolloverFromReset() {
        #expect(counterStep(from: 10, to: 25, widthBits: 32, maximumIncrease: 100) == .increase(15))
        #expect(counterStep(from: 0xFFFF_FFF0, to: 0x10, widthBits: 32, maximumIncrease: 100) == .rollover(0x20))
        #expect(counterStep(from: 5_000, to: 10, widthBits: 32, maximumIncrease: 100) == .reset)
    }
}

@Suite(.timeLimit(.minutes(5))) struct CounterStepWithoutRatedPowerTests {
    /// Without a rated power there is no rate bound: a drop is a wrap only from the top eighth of the range to
    /// the bottom eighth. Anything else is a reset, never an absurd 2^64 increase.
    @Test func aDropIsAResetUnlessItLooksLikeAWrap() {
        #expect(counterStep(from: 1_000_000, to: 0, widthBits: 64, maximumIncrease: .max) == .reset)
        #expect(counterStep(from: 5_000, to: 10, widthBits: 32, maximumIncrease: .max) == .reset)
        #expect(counterStep(from: 0xFFFF_FFF0, to: 0x10, widthBits: 32, maximumIncrease: .max) == .rollover(0x20))
        #expect(counterStep(from: 100_000, to: 5, range: .modulus(100_010), maximumIncrease: .max) == .rollover(15))
        #expect(counterStep(from: 50_000, to: 5, range: .modulus(100_010), maximumIncrease: .max) == .reset)
    }
}
