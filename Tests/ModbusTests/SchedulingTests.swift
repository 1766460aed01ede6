import MeterCore
import Modbus
import Synchronization
import Testing

@Suite struct PollScheduleTests {
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
final class ScriptedReader: RegisterReader {
    let dead: Set<Int>
    let calls = Mutex<[Int: Int]>([:])
    init(dead: Set<Int>) { self.dead = dead }

    func readRegisters(unit: Int, space: RegisterField.Space, address: Int, count: Int) async throws(ModbusError) -> [UInt16] {
        calls.withLock { $0[unit, default: 0] += 1 }
        if dead.contains(unit) { throw ModbusError(function: "modbus_read_registers", code: ETIMEDOUT_CODE, context: "unit \(unit)") }
        return (0..<count).map { UInt16(truncatingIfNeeded: address + $0) }
    }
}

#if canImport(Glibc)
import Glibc
let ETIMEDOUT_CODE = ETIMEDOUT
#endif

@Suite struct BusPollerTests {
    /// A profile that needs three requests per poll.
    static let threeRequests = MeterProfile(id: "three", manufacturer: "t", model: "t", maxGap: 0, fields: [
        RegisterField(quantity: .power, space: .holding, address: 0, type: .u16, unit: .watt),
        RegisterField(quantity: .energyImport, space: .holding, address: 10, type: .u16, unit: .wattHour),
        RegisterField(quantity: .energyExport, space: .holding, address: 20, type: .u16, unit: .wattHour),
    ])

    @Test func aDeadUnitCostsOneRequestPerAttemptAndIsBackedOff() async throws {
        let reader = ScriptedReader(dead: [2])
        let meters = (1...3).map { PolledMeter(id: try! MeterID(validating: "m\($0)"), unit: $0, profile: Self.threeRequests, period: .milliseconds(20)) }
        let poller = BusPoller(meters: meters, reader: reader, timing: BusTiming(maximumBackoff: .milliseconds(160)))
        let events = Mutex<[PollEvent]>([])
        let task = Task { await poller.run { event in events.withLock { $0.append(event) } } }
        try await Task.sleep(for: .milliseconds(1000))
        task.cancel()
        await task.value
        let all = events.withLock { $0 }
        let samples = { (id: String) in all.filter { if case .sample(let s, _, _, _) = $0 { s.meter.rawValue == id } else { false } } }
        let failures = all.compactMap { if case .failure(_, let unit, _, let n, let wait) = $0 { (unit, n, wait) } else { nil } }
        let calls = reader.calls.withLock { $0 }
        print("1 s at 20 ms: m1 \(samples("m1").count) polls, m3 \(samples("m3").count) polls, dead unit 2: \(failures.count) attempts, waits \(failures.map(\.2))")
        // Each attempt on the dead unit is one request, not three.
        #expect(calls[2] == failures.count)
        #expect(failures.allSatisfy { $0.0 == 2 })
        // Back-off: 20, 40, 80, 160, 160 … ms, so far fewer attempts than the 50 periods.
        #expect(failures.count <= 12)
        #expect(failures.last!.2 == .milliseconds(160))
        // The live units keep polling (generous bound: at least a fifth of their 50 periods).
        #expect(samples("m1").count >= 10 && samples("m3").count >= 10)
        #expect(calls[1] == samples("m1").count * 3)
        if case .sample(let s, _, let requests, _) = samples("m1").first! {
            #expect(requests == 3)
            #expect(s.values[.energyImport] == 10)
            #expect(s.time.wallNanos > 0 && s.time.monotonicNanos > 0)
        }
    }
}
