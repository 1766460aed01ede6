import Foundation
import MeterCore
import MeterGateTesting
import Modbus
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(5))) struct PollScheduleTests {
    let t0 = ContinuousClock().now

    @Test func answeringMetersKeepTheirOwnPeriodAndPhase() {
        var s = PollSchedule(periods: [.seconds(1), .seconds(3)], start: t0, maximumBackoff: .seconds(60))
        #expect(s.next()!.index == 0)
        s.succeeded(0, now: t0 + .milliseconds(100))
        #expect(s.next()!.index == 1)
        s.succeeded(1, now: t0 + .milliseconds(200))
        #expect(s.entries[0].due == t0 + .seconds(1))
        #expect(s.entries[1].due == t0 + .seconds(3))
        // A poll that finished 2.5 periods late skips the missed slots and keeps the phase.
        s.succeeded(0, now: t0 + .milliseconds(3500))
        #expect(s.entries[0].due == t0 + .seconds(4))
    }

    @Test func failuresBackOffExponentiallyUpToTheCap() {
        var s = PollSchedule(periods: [.seconds(1)], start: t0, maximumBackoff: .seconds(10))
        let waits = (0..<7).map { _ in s.failed(0, now: t0) }
        #expect(waits == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10), .seconds(10)])
        #expect(s.entries[0].consecutiveFailures == 7)
        s.succeeded(0, now: t0)
        #expect(s.entries[0].consecutiveFailures == 0)
        #expect(s.failed(0, now: t0) == .seconds(1))
        // A cap below the period never makes a meter poll faster than its period.
        let slow = PollSchedule(periods: [.seconds(30)], start: t0, maximumBackoff: .seconds(10))
        #expect(slow.backoff(period: .seconds(30), failures: 3) == .seconds(30))
    }
}

/// Serves registers from memory; a unit in `dead` times out (at once, as a fake), and every call is counted.
/// An actor on its own queue, like the real connection, so it needs no cooperative-pool thread either.
actor ScriptedReader: RegisterReader {
    let dead: Set<Int>
    nonisolated let calls = Mutex<[Int: Int]>([:])
    private let executor = SerialQueueExecutor(label: "scripted-reader")
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    init(dead: Set<Int>) { self.dead = dead }

    func readRegisters(unit: Int, space: RegisterField.Space, address: Int, count: Int) throws(ModbusError) -> [UInt16] {
        calls.withLock { $0[unit, default: 0] += 1 }
        if dead.contains(unit) { throw ModbusError(function: "modbus_read_registers", code: ETIMEDOUT_CODE, context: "unit \(unit)") }
        return (0..<count).map { UInt16(truncatingIfNeeded: address + $0) }
    }
}

#if canImport(Glibc)
import Glibc
let ETIMEDOUT_CODE = ETIMEDOUT
#endif

@Suite(.timeLimit(.minutes(5))) struct BusPollerTests {
    /// A profile that needs three requests per poll.
    static let threeRequests = MeterProfile(id: "three", manufacturer: "t", model: "t", maxGap: 0, fields: [
        RegisterField(quantity: .power, space: .holding, address: 0, type: .u16, unit: .watt),
        RegisterField(quantity: .energyImport, space: .holding, address: 10, type: .u16, unit: .wattHour),
        RegisterField(quantity: .energyExport, space: .holding, address: 20, type: .u16, unit: .wattHour),
    ])

    /// On a clock the test steps (no real waiting): over 990 ms of 20 ms periods, the two live units are polled
    /// at every slot, 50 times, three requests each; the dead unit is tried at 0, 20, 60, 140, 300, 460, 620,
    /// 780 and 940 ms (back-off 20, 40, 80, then the 160 ms cap), one request per attempt.
    @Test func aDeadUnitCostsOneRequestPerAttemptAndIsBackedOff() async throws {
        let reader = ScriptedReader(dead: [2])
        let meters = (1...3).map { PolledMeter(id: try! MeterID(validating: "m\($0)"), unit: $0, profile: Self.threeRequests, period: .milliseconds(20)) }
        let clock = ManualClock()
        let poller = BusPoller(meters: meters, reader: reader, timing: BusTiming(maximumBackoff: .milliseconds(160)), clock: clock)
        let events = Mutex<[PollEvent]>([])
        let task = poller.start { event in events.withLock { $0.append(event) } }
        // 990 ms, not 1 s: the run ends with the loop asleep until the 1000 ms slot, so cancelling cuts no poll short.
        try await clock.run(for: .milliseconds(990))
        task.cancel()
        await task.value
        let all = events.withLock { $0 }
        let samples = { (id: String) in all.filter { if case .sample(let s, _, _, _, _) = $0 { s.meter.rawValue == id } else { false } } }
        let failures = all.compactMap { if case .failure(_, let unit, _, let n, let wait) = $0 { (unit, n, wait) } else { nil } }
        let calls = reader.calls.withLock { $0 }
        #expect(samples("m1").count == 50 && samples("m3").count == 50, "m1 \(samples("m1").count), m3 \(samples("m3").count)")
        #expect(calls[1] == 150 && calls[3] == 150, "\(calls)")
        #expect(failures.allSatisfy { $0.0 == 2 })
        #expect(failures.map(\.1) == Array(1...9))
        #expect(failures.map(\.2) == [20, 40, 80, 160, 160, 160, 160, 160, 160].map { Duration.milliseconds($0) }, "\(failures.map(\.2))")
        // Each attempt on the dead unit is one request, not three.
        #expect(calls[2] == 9, "\(calls)")
        if case .sample(let s, _, let requests, _, _) = try #require(samples("m1").first) {
            #expect(requests == 3)
            #expect(s.values[.energyImport] == 10)
            #expect(s.time.wallNanos > 0 && s.time.monotonicNanos > 0)
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct PoolIndependenceTests {
    /// Every cooperative-pool thread blocked (as careless blocking code elsewhere would): the poller, which
    /// runs on its own queue and wakes on dispatch timers, keeps polling.
    @Test func pollingContinuesWhileTheCooperativePoolIsBlocked() async throws {
        let reader = ScriptedReader(dead: [])
        let meters = [PolledMeter(id: try MeterID(validating: "m1"), unit: 1, profile: BusPollerTests.threeRequests, period: .milliseconds(20))]
        let poller = BusPoller(meters: meters, reader: reader, timing: BusTiming())
        let polls = Atomic<Int>(0)
        let runner = poller.start { event in if case .sample = event { polls.add(1, ordering: .relaxed) } }
        try await Task.sleep(for: .milliseconds(100))
        let before = reader.calls.withLock { $0[1] ?? 0 }
        // Block every pool thread for 600 ms.
        let threads = ProcessInfo.processInfo.activeProcessorCount * 2 + 2
        let blockedAt = ContinuousClock.now
        let blockers = (0..<threads).map { _ in Task.detached { _ = usleep(600_000) } }
        _ = usleep(600_000)   // this test's own thread too
        let during = reader.calls.withLock { $0[1] ?? 0 } - before
        // On a busy machine the block lasts longer than asked: judge the polls by the time that really passed.
        let periods = (ContinuousClock.now - blockedAt) / .milliseconds(20)
        for b in blockers { await b.value }
        runner.cancel()
        await runner.value
        print("polls while the pool was blocked for 600 ms at a 20 ms period: \(during / 3)")
        #expect(Double(during / 3) >= periods / 3, "\(during / 3) polls in \(periods) periods")
    }
}
