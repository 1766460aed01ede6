import Foundation
import MeterCore
import Modbus
import Simulator
import Synchronization
import TestSupport
import Testing

let sdm630 = try! MeterProfile.load(path: "\(repositoryRoot)/profiles/eastron-sdm630.yaml")

/// Mean spacing of the monotonic timestamps, in milliseconds.
func meanPeriodMillis(_ samples: [Sample]) -> Double {
    guard samples.count >= 2 else { return .nan }
    let t = samples.map(\.time.monotonicNanos)
    return Double(t.last! - t.first!) / Double(t.count - 1) / 1e6
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct BusFaultTests {
    /// Three SDM630s on one RTU line (socat pty pair), unit 2 dead: units 1 and 3 keep their period.
    @Test func aDeadUnitOnAnRTUBusDoesNotStallTheOthers() async throws {
        let pty = try SocatPTYPair()
        let meters: [Int: SimulatedMeter] = [
            1: SimulatedMeter(profile: sdm630, curve: .constant(watts: 1000)),
            2: SimulatedMeter(profile: sdm630, curve: .constant(watts: 2000), faults: [Fault(.noAnswer)]),
            3: SimulatedMeter(profile: sdm630, curve: .constant(watts: 3000)),
        ]
        let server = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 38_400), handler: SimulatedBus(meters: meters))
        defer { server.stop() }
        let transport = ModbusTransport.rtu(SerialSettings(device: pty.b, baud: 38_400))
        let connection = try ModbusConnection(transport, responseTimeout: .milliseconds(200))
        let period = Duration.milliseconds(300)
        let polled = (1...3).map { PolledMeter(id: try! MeterID(validating: "meter-\($0)"), unit: $0, profile: sdm630, period: period) }
        var timing = BusTiming.defaults(for: transport)
        timing.maximumBackoff = .seconds(2)
        let poller = BusPoller(meters: polled, reader: connection, timing: timing)
        let samples = Mutex<[Int: [Sample]]>([:])
        let failures = Mutex<[(Int, ModbusError.Kind?)]>([])
        let started = ContinuousClock.now
        let task = poller.start { event in
            switch event {
            case .sample(let s, let unit, _, _, _): samples.withLock { $0[unit, default: []].append(s) }
            case .failure(_, let unit, let error, _, _):
                if case .modbus(let e) = error { failures.withLock { $0.append((unit, e.kind)) } } else { failures.withLock { $0.append((unit, nil)) } }
            }
        }
        try await Task.sleep(for: .seconds(4))
        // Measured, not assumed: under a loaded test run this task's own sleep may last longer.
        let elapsed = ContinuousClock.now - started
        task.cancel()
        await task.value
        let got = samples.withLock { $0 }, failed = failures.withLock { $0 }
        let cycles = elapsed / period
        print(String(format: "RTU bus, 3 units, unit 2 dead, period 300 ms, timeout 200 ms, %.1f s: unit 1 %d polls (mean period %.0f ms), unit 3 %d polls (mean period %.0f ms), unit 2 %d timeouts",
                     elapsed / .seconds(1), got[1]?.count ?? 0, meanPeriodMillis(got[1] ?? []), got[3]?.count ?? 0, meanPeriodMillis(got[3] ?? []), failed.count))
        // Generous bounds, not timings: the live units got most of their cycles, the dead one few attempts.
        #expect(Double(got[1]?.count ?? 0) >= cycles * 0.5)
        #expect(Double(got[3]?.count ?? 0) >= cycles * 0.5)
        #expect(got[2] == nil)
        #expect(failed.allSatisfy { $0.0 == 2 && $0.1 == .timeout })
        // Back-off 300, 600, 1200, then every 2000 ms: a handful of timeouts, not one per cycle.
        #expect(failed.count >= 2 && Double(failed.count) <= 4 + elapsed / .seconds(2))
        // Values are the simulated ones, and each sample carries wall and monotonic time.
        let first = try #require(got[3]?.first)
        #expect(first.values[.power] == 3000)
        #expect(abs(Double(first.time.wallNanos) / 1e9 - Date().timeIntervalSince1970) < 60)
    }

    @Test(arguments: ["tcp", "rtu"]) func injectedFaultsReachTheClientAsTypedErrors(transport: String) async throws {
        let time = ManualTime()
        let meters: [Int: SimulatedMeter] = [
            1: SimulatedMeter(profile: sdm630, curve: .constant(watts: 500), clock: time),
            2: SimulatedMeter(profile: sdm630, curve: .constant(watts: 500), faults: [Fault(.noAnswer)], clock: time),
            3: SimulatedMeter(profile: sdm630, curve: .constant(watts: 500), faults: [Fault(.exception(.serverDeviceBusy))], clock: time),
            4: SimulatedMeter(profile: sdm630, curve: .constant(watts: 500), faults: [Fault(.corruptedFrame)], clock: time),
            5: SimulatedMeter(profile: sdm630, curve: .constant(watts: 500), faults: [Fault(.slowAnswer(.milliseconds(400)))], clock: time),
            6: SimulatedMeter(profile: sdm630, curve: .constant(watts: 500), faults: [Fault(.noAnswer, every: 2)], clock: time),
        ]
        var pty: SocatPTYPair?
        var tcpServer: ModbusTCPServer?
        var rtuServer: ModbusRTUServer?
        let client: ModbusConnection
        if transport == "tcp" {
            tcpServer = try ModbusTCPServer(port: 0, handler: SimulatedBus(meters: meters))
            client = try ModbusConnection(.tcp(host: "127.0.0.1", port: tcpServer!.port), responseTimeout: .milliseconds(150))
        } else {
            pty = try SocatPTYPair()
            rtuServer = try ModbusRTUServer(settings: SerialSettings(device: pty!.a, baud: 115_200), handler: SimulatedBus(meters: meters))
            client = try ModbusConnection(.rtu(SerialSettings(device: pty!.b, baud: 115_200)), responseTimeout: .milliseconds(150))
        }
        defer { tcpServer?.stop(); rtuServer?.stop(); _ = pty }
        func kind(_ unit: Int) async -> ModbusError.Kind? {
            do { _ = try await client.readInputRegisters(unit: unit, address: 0x34, count: 2); return nil } catch { return error.kind }
        }
        #expect(await kind(1) == nil)
        #expect(await kind(2) == .timeout)
        #expect(await kind(3) == .exception(.serverDeviceBusy))
        #expect(await kind(4) == .badFrame)
        #expect(await kind(5) == .timeout)
        try await Task.sleep(for: .milliseconds(400))   // let the slow answer pass before the next request
        await client.setResponseTimeout(.seconds(1))
        #expect(await kind(5) == nil)
        // every=2: the first, third … requests fail, the others answer.
        #expect(await kind(6) == .timeout)
        #expect(await kind(6) == nil)
        #expect(await kind(6) == .timeout)
        // The bus is usable after all that.
        let words = try await client.readInputRegisters(unit: 1, address: 0x34, count: 2)
        #expect(decodeRegisters(words, as: .float32) == .float(500))
    }

    @Test func aLateAnswerOnASharedRTUBusIsNotTakenForTheNextUnitsAnswer() async throws {
        let time = ManualTime()
        // Unit 2 answers 250 ms late, past the 150 ms timeout; unit 1 at once, with other values.
        let meters: [Int: SimulatedMeter] = [
            1: SimulatedMeter(profile: sdm630, curve: .constant(watts: 500), clock: time),
            2: SimulatedMeter(profile: sdm630, curve: .constant(watts: 7000), faults: [Fault(.slowAnswer(.milliseconds(250)))], clock: time),
        ]
        let pty = try SocatPTYPair()
        let server = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 115_200), handler: SimulatedBus(meters: meters))
        defer { server.stop(); _ = pty }
        let client = try ModbusConnection(.rtu(SerialSettings(device: pty.b, baud: 115_200)), responseTimeout: .milliseconds(150))
        for _ in 0..<3 {
            await #expect(throws: ModbusError.self) { try await client.readInputRegisters(unit: 2, address: 0x34, count: 2) }
            // Straight on to the healthy unit: its own answer, not unit 2's late one, and no error.
            let words = try await client.readInputRegisters(unit: 1, address: 0x34, count: 2)
            #expect(decodeRegisters(words, as: .float32) == .float(500))
        }
    }

    @Test func counterResetAndRolloverShowInTheRegisters() async throws {
        let time = ManualTime()
        let abb = try MeterProfile.load(path: "\(repositoryRoot)/profiles/abb-b23.yaml")
        let em24 = try MeterProfile.load(path: "\(repositoryRoot)/profiles/carlogavazzi-em24.yaml")
        // ABB: import counter in 0.01 kWh units as u64. Reset after 60 s.
        let reset = SimulatedMeter(profile: abb, curve: .constant(watts: 3600), importWattHours: 50_000, faults: [Fault(.counterReset, after: 60)], clock: time)
        // EM24: i32 in 0.1 kWh: wrap the raw counter at 1 000 000 (100 000 kWh).
        let roll = SimulatedMeter(profile: em24, curve: .constant(watts: 3_600_000), importWattHours: 99_999_000, faults: [Fault(.counterRollover(modulus: 1_000_000))], clock: time)
        let server = try ModbusTCPServer(port: 0, handler: SimulatedBus(meters: [1: reset, 2: roll]))
        defer { server.stop() }
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: server.port))
        func energy(_ unit: Int, _ profile: MeterProfile) async throws -> Double {
            try await MeterReader(profile: profile, quantities: [.energyImport]).read(unit: unit, from: client).values[.energyImport]!
        }
        #expect(try await energy(1, abb) == 50_000)
        #expect(try await energy(2, em24) == 99_999_000)
        time.nanos += 30_000_000_000    // 30 s: +30 Wh at 3.6 kW; +30 kWh at 3.6 MW
        #expect(try await energy(1, abb) == 50_030)
        // 99 999 kWh + 30 kWh = 100 029 kWh: raw 1 000 290 wraps to 290 (29 kWh).
        #expect(try await energy(2, em24) == 29_000)
        time.nanos += 40_000_000_000    // 70 s: the reset happened at 60 s; 10 s of load since
        let afterReset = try await energy(1, abb)
        #expect(afterReset < 50_000 && afterReset <= 10)
    }

    @Test func aReplacedMeterHasANewSerialAndCountsFromItsOwnStart() throws {
        let fault = try #require(Fault.parse("replace:2.5/after=60"))
        #expect(fault == Fault(.meterReplaced(startWattHours: 2500), after: 60))
        #expect(Fault.parse("replace") == Fault(.meterReplaced(startWattHours: 0)))
        #expect(Fault.parse("replace:-1") == nil && Fault.parse("replace:x") == nil)
        let time = ManualTime()
        let sunspec = try MeterProfile.load(path: "\(repositoryRoot)/profiles/sunspec-203.yaml")
        let meter = SimulatedMeter(profile: sunspec, curve: .constant(watts: 3600), importWattHours: 80_000, faults: [fault],
                                   serialNumber: "SIM00007", clock: time)
        // The serial number in the SunSpec common model: 16 registers after Mn, Md, Opt and Vr.
        let serialAddress = SimulatedMeter.sunspecBase + 2 + 2 + 16 + 16 + 8 + 8
        let before = meter.registers(space: .holding, address: serialAddress, count: 16)
        #expect(meter.serialNumber == "SIM00007")
        time.nanos += 30_000_000_000    // 30 s at 3.6 kW: +30 Wh on the old meter
        #expect(abs(meter.values()[.energyImport]! - 80_030) < 1e-6)
        time.nanos += 40_000_000_000    // 70 s: replaced at 60 s with 2.5 kWh on it, 10 s of load since
        #expect(abs(meter.values()[.energyImport]! - 2_510) < 1e-6)
        #expect(meter.values()[.energyExport] == 0)
        #expect(meter.serialNumber == "SIM00007R")
        let after = meter.registers(space: .holding, address: serialAddress, count: 16)
        #expect(before != after, "the SunSpec serial number registers did not change")
        // Once only: the new meter keeps counting.
        time.nanos += 60_000_000_000
        #expect(abs(meter.values()[.energyImport]! - 2_570) < 1e-6)
        #expect(meter.serialNumber == "SIM00007R")
    }

    @Test func loadCurvesAndRecordedCSV() throws {
        let sine = LoadCurve.sine(baseWatts: 1000, amplitudeWatts: 500, period: .seconds(60))
        #expect(abs(sine.watts(at: 15) - 1500) < 1e-9)
        #expect(abs(sine.watts(at: 45) - 500) < 1e-9)
        let csv = try RecordedLoad(csv: "seconds,watts\n0,100\n10,200\n20,0\n", file: "t.csv")
        #expect(LoadCurve.recorded(csv).watts(at: 5) == 150)
        #expect(LoadCurve.recorded(csv).watts(at: 25) == 150)     // repeats after the last point
        let bad = #expect(throws: RecordedLoad.FormatError.self) { try RecordedLoad(csv: "0,1\n5,2\n4,3\n", file: "bad.csv") }
        #expect(bad?.description == "bad.csv:3: time 4.0 s does not come after 5.0 s")
        // Energy is the integral: a triangle 0→10 s from 100 to 200 W is 1500 J = 0.41667 Wh.
        let time = ManualTime()
        let meter = SimulatedMeter(profile: sdm630, curve: .recorded(csv), clock: time)
        time.nanos += 10_000_000_000
        #expect(abs(meter.values()[.energyImport]! - 1500.0 / 3600) < 1e-9)
    }

    @Test func simulationFileIsReadWithClearErrors() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        dir.write("day.csv", "0,100\n3600,300\n")
        let library = try ProfileLibrary(directories: ["\(repositoryRoot)/profiles"])
        let good = dir.write("sim.yaml", """
            tcp: 127.0.0.1:0
            rtu: { device: /tmp/x, baud: 19200, parity: E, emulate_wire_time: true }
            meters:
              - { unit: 1, profile: eastron-sdm630, load: { constant: 1500 }, import_kwh: 12.5 }
              - { unit: 2, profile: sunspec-203, load: { csv: day.csv }, faults: ["no-answer/every=3", "slow:200ms/after=10"] }
              - { unit: 3, profile: abb-b23, load: { sine: { base: 100, amplitude: 50, period: 30s } } }
            """)
        let config = try SimulationConfig.load(path: good, profiles: library)
        #expect(config.meters.count == 3)
        #expect(config.rtu?.parity == .even && config.rtu?.baud == 19200 && config.emulateWireTime)
        #expect(config.meters[0].importWattHours == 12_500)
        #expect(config.meters[1].faults == [Fault(.noAnswer, every: 3), Fault(.slowAnswer(.milliseconds(200)), after: 10)])
        let cases: [(String, String)] = [
            ("meters:\n  - { unit: 1, profile: nope }\n", "no profile 'nope'"),
            ("meters:\n  - { unit: 1, profile: abb-b23, faults: [explode] }\n", "expected a fault"),
            ("meters:\n  - { unit: 300, profile: abb-b23 }\n", "meters[0].unit"),
            ("meters:\n  - { unit: 1, profile: abb-b23, load: { csv: missing.csv } }\n", "cannot read the file"),
            ("meters:\n  - { unit: 1, profile: abb-b23 }\n  - { unit: 1, profile: abb-b23 }\n", "unit 1 appears twice"),
            ("tcp: nowhere\nmeters: []\n", "expected HOST:PORT"),
        ]
        for (i, (text, needle)) in cases.enumerated() {
            let path = dir.write("bad\(i).yaml", text)
            let error = #expect(throws: (any Error).self) { try SimulationConfig.load(path: path, profiles: library) }
            #expect("\(error!)".contains(needle), "\(error!) should mention \(needle)")
        }
    }
}
