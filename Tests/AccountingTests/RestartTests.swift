import Accounting
import Foundation
import MeterCore
import Testing

@Suite(.timeLimit(.minutes(5))) struct RestartTests {
    func roundTrip<T: Codable>(_ value: T) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(value))
    }

    func counterConfiguration() -> CounterAccountant.Configuration {
        .init(settings: settings("m1"), scale: .wattHours(1, per: 10), hasExportCounter: true, ratedPowerWatts: 50_000)
    }

    func reading(_ m: Int64) -> CounterAccountant.Reading {
        .init(time: at(m * minute + 7 * second), importCount: UInt64(10_000 + 37 * m), exportCount: UInt64(5 * m), powerWatts: 222)
    }

    /// Restarts after every sample of two hours, including the ones on interval boundaries.
    @Test(arguments: [0, 1, 14, 15, 16, 37, 45, 89, 119])
    func aRestartAtAnyPointChangesNothing(restartAfter: Int) throws {
        var uninterrupted = CounterAccountant(configuration: counterConfiguration(), bootID: "boot-a")
        var expected: [AccountedInterval] = []
        for m in Int64(0)...120 { expected += try uninterrupted.add(.init(time: at(m * minute), importCount: UInt64(7 * m * m), exportCount: 0)) }
        var meter = CounterAccountant(configuration: counterConfiguration(), bootID: "boot-a")
        var actual: [AccountedInterval] = []
        for m in Int64(0)...120 {
            actual += try meter.add(.init(time: at(m * minute), importCount: UInt64(7 * m * m), exportCount: 0))
            if m == Int64(restartAfter) {
                meter = try CounterAccountant(configuration: counterConfiguration(), restoring: roundTrip(meter.snapshot()), bootID: "boot-a")
            }
        }
        #expect(actual == expected)
        #expect(actual.count == 8)
    }

    @Test func aRestartMidIntervalInTheSameBootChangesNothing() throws {
        var uninterrupted = CounterAccountant(configuration: counterConfiguration(), bootID: "boot-a")
        var expected: [AccountedInterval] = []
        for m in Int64(0)...120 { expected += try uninterrupted.add(reading(m)) }

        var before = CounterAccountant(configuration: counterConfiguration(), bootID: "boot-a")
        var actual: [AccountedInterval] = []
        for m in Int64(0)...37 { actual += try before.add(reading(m)) }
        let saved = try roundTrip(before.snapshot())
        var after = try CounterAccountant(configuration: counterConfiguration(), restoring: saved, bootID: "boot-a")
        for m in Int64(38)...120 { actual += try after.add(reading(m)) }

        #expect(actual == expected)
        #expect(expected.count == 8)
    }

    @Test func aPowerSourceRestartInTheSameBootChangesNothing() throws {
        let s = settings("gpu0", source: .gpu)
        func reading(_ m: Int64) -> PowerAccountant.Reading { .init(time: at(m * minute + 3 * second), powerWatts: 100 + Double(m % 7) * 11.5) }
        var uninterrupted = PowerAccountant(settings: s, bootID: "b")
        var expected: [AccountedInterval] = []
        for m in Int64(0)...90 { expected += try uninterrupted.add(reading(m)) }
        var before = PowerAccountant(settings: s, bootID: "b")
        var actual: [AccountedInterval] = []
        for m in Int64(0)...52 { actual += try before.add(reading(m)) }
        var after = try PowerAccountant(settings: s, restoring: try roundTrip(before.snapshot()), bootID: "b")
        for m in Int64(53)...90 { actual += try after.add(reading(m)) }
        #expect(actual == expected)
    }

    @Test func downtimeAcrossARebootBecomesExplicitGapIntervals() throws {
        let s = settings("gpu0", source: .gpu)
        var rail = PowerAccountant(settings: s, bootID: "boot-a")
        for m in Int64(0)...37 { _ = try rail.add(.init(time: at(m * minute), powerWatts: 400)) }
        let saved = try roundTrip(rail.snapshot())
        // Two hours later, after a reboot: the monotonic clock starts again near zero.
        var restored = try PowerAccountant(settings: s, restoring: saved, bootID: "boot-b")
        let back = Timestamp(wallNanos: newYear2026 + 157 * minute, monotonicNanos: 20 * 1_000_000_000)
        let closed = try restored.add(.init(time: back, powerWatts: 400))
        expectConsistent(closed.results)
        #expect(closed.results.map(\.startMillis) == (2...9).map { newYear2026 / 1_000_000 + Int64($0) * 900_000 })
        #expect(closed.results.first?.importDelta == 46_666) // 30:00 … 37:00 at 400 W, the rest unseen
        #expect(closed.results.dropFirst().allSatisfy { $0.importDelta == .zero && $0.sampleCount == 0 })
        #expect(closed.results.allSatisfy { $0.quality == .gap })
        // Integration carries on in the new boot; the restart is noted in the interval it happened in.
        var more: [AccountedInterval] = []
        for m in UInt64(1)...8 {
            let next = Timestamp(wallNanos: newYear2026 + 157 * minute + Int64(m) * minute, monotonicNanos: 20 * 1_000_000_000 + m * UInt64(minute))
            more += try restored.add(.init(time: next, powerWatts: 400))
        }
        // 157:00 … 165:00 at 400 W is 53 333.3 mWh; with the 0.67 mWh carried from before the restart it makes 53 334.
        #expect(more.results.map(\.importDelta) == [53_334])
        #expect(more.first?.result.importTotal == 300_000)
        #expect(more.first?.result.quality == .gap)
        #expect(more.first?.events.contains(.restart(downtimeNanoseconds: 120 * minute)) == true)
    }

    @Test func aCounterBridgesARebootWithoutLosingEnergy() throws {
        var meter = CounterAccountant(configuration: counterConfiguration(), bootID: "boot-a")
        for m in Int64(0)...37 { _ = try meter.add(reading(m)) }
        var restored = try CounterAccountant(configuration: counterConfiguration(), restoring: roundTrip(meter.snapshot()), bootID: "boot-b")
        let back = Timestamp(wallNanos: newYear2026 + 97 * minute + 7 * second, monotonicNanos: 9 * 1_000_000_000)
        let closed = try restored.add(.init(time: back, importCount: 10_000 + 37 * 97, exportCount: 5 * 97, powerWatts: 222))
        expectConsistent(closed.results)
        #expect(closed.results.allSatisfy { $0.quality == .gap })
        #expect(restored.totals?.imported == CounterScale.wattHours(1, per: 10).energy(ofCount: 10_000 + 37 * 97))
    }

    @Test func aSnapshotOfAnotherSourceIsRefused() throws {
        var meter = CounterAccountant(configuration: counterConfiguration())
        _ = try meter.add(reading(0))
        var other = counterConfiguration()
        other.scale = .wattHours(1)
        #expect(throws: AccountingError.self) { try CounterAccountant(configuration: other, restoring: meter.snapshot()) }
        #expect(throws: AccountingError.self) { try PowerAccountant(settings: settings("x"), restoring: PowerAccountant(settings: settings("y")).snapshot()) }
    }
}
