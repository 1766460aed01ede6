import Foundation
import MeterCore
import Modbus
import Synchronization
import TestSupport
import Testing

/// Holding registers from a sparse map; unmapped addresses answer "illegal data address", unknown units time out.
actor MapReader: RegisterReader {
    let units: [Int: [Int: UInt16]]
    private let executor = SerialQueueExecutor(label: "map-reader")
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    init(_ units: [Int: [Int: UInt16]]) { self.units = units }

    func readRegisters(unit: Int, space: RegisterField.Space, address: Int, count: Int) throws(ModbusError) -> [UInt16] {
        guard let map = units[unit] else { throw ModbusError(function: "modbus_read_registers", code: ETIMEDOUT_CODE) }
        let words = (address..<(address + count)).map { map[$0] }
        guard space == .holding, words.allSatisfy({ $0 != nil }) else {
            throw ModbusError(function: "modbus_read_registers", code: modbusExceptionCode(.illegalDataAddress))
        }
        return words.map { $0! }
    }
}

/// libmodbus's errno for an exception answer: MODBUS_ENOBASE (112345678) + the exception code.
func modbusExceptionCode(_ e: ModbusException) -> Int32 { 112_345_678 + Int32(e.rawValue) }

/// A SunSpec device at `base`: marker, common model, the given models (id, length, body) and the end marker.
func sunspecMap(base: Int, serial: String, models: [(Int, Int, [Int: UInt16])]) -> [Int: UInt16] {
    var map: [Int: UInt16] = [base: 0x5375, base + 1: 0x6E53]
    var a = base + 2
    var common: [UInt16] = [1, 66] + sunspecRegisters("Acme", registers: 16) + sunspecRegisters("M1", registers: 16)
    common += [UInt16](repeating: 0, count: 8) + sunspecRegisters("2.1", registers: 8) + sunspecRegisters(serial, registers: 16) + [1, 0]
    for (i, w) in common.enumerated() { map[a + i] = w }
    a += 68
    for (id, length, body) in models {
        map[a] = UInt16(id); map[a + 1] = UInt16(length)
        for offset in 2..<(2 + length) { map[a + offset] = body[offset] ?? 0 }
        a += 2 + length
    }
    map[a] = 0xFFFF; map[a + 1] = 0
    return map
}

@Suite(.timeLimit(.minutes(5))) struct SunSpecTests {
    static let library = try! ProfileLibrary(directories: ["\(repositoryRoot)/profiles"])

    @Test func discoveryFindsTheMarkerAtAnyBaseAndWalksTheChain() async throws {
        // Model 203 after an unrelated model 120; W = 1234 × 10^-1 W, TotWhImp = 70000 × 10^2 Wh.
        let body: [Int: UInt16] = [18: 1234, 22: UInt16(bitPattern: -1), 46: 1, 47: 4464, 54: 2]
        let reader = MapReader([
            1: sunspecMap(base: 50000, serial: "SN-42", models: [(120, 26, [:]), (203, 105, body)]),
            2: [0: 17],                // answers, but no marker anywhere
        ])
        let device = try #require(try await SunSpecDiscovery.discover(unit: 1, reader: reader))
        #expect(device.base == 50000)
        #expect(device.manufacturer == "Acme" && device.model == "M1" && device.serialNumber == "SN-42" && device.version == "2.1")
        #expect(device.models.map(\.id) == [1, 120, 203])
        #expect(device.meterModel?.id == 203)
        let model = try #require(device.meterModel)
        #expect(model.address == 50000 + 2 + 68 + 28)
        let profile = try #require(Self.library["sunspec-203"]).located(at: model.address)
        let values = try await MeterReader(profile: profile, quantities: [.power, .energyImport]).read(unit: 1, from: reader).values
        #expect(values[.power] == 123.4)
        #expect(values[.energyImport] == Double(1 << 16 | 4464) * 100)
        #expect(try await SunSpecDiscovery.discover(unit: 2, reader: reader) == nil)
        // A silent unit is an error (a timeout), not "not SunSpec".
        let error = await #expect(throws: ModbusError.self) { try await SunSpecDiscovery.discover(unit: 3, reader: reader) }
        #expect(error?.kind == .timeout)
    }

    @Test func thePollerReportsAMissingModelAndPollsTheOthers() async throws {
        let reader = MapReader([
            1: sunspecMap(base: 40000, serial: "A", models: [(201, 105, [18: 500])]),
            2: sunspecMap(base: 40000, serial: "B", models: [(203, 105, [18: 700])]),
        ])
        let meters = [
            PolledMeter(id: try MeterID(validating: "wants-203"), unit: 1, profile: Self.library["sunspec-203"]!, period: .milliseconds(20)),
            PolledMeter(id: try MeterID(validating: "has-203"), unit: 2, profile: Self.library["sunspec-203"]!, period: .milliseconds(20)),
        ]
        let events = Mutex<[PollEvent]>([])
        let task = BusPoller(meters: meters, reader: reader, timing: BusTiming(maximumBackoff: .seconds(1))).start { e in events.withLock { $0.append(e) } }
        // Until the missing model is reported and the other unit has answered (with a deadline).
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline, !events.withLock({ all in
            all.contains { if case .failure(_, 1, .sunspecModelMissing, _, _) = $0 { true } else { false } }
                && all.contains { if case .sample(_, 2, _, _, _) = $0 { true } else { false } }
        }) { try await Task.sleep(for: .milliseconds(10)) }
        task.cancel()
        await task.value
        let all = events.withLock { $0 }
        let missing = all.compactMap { if case .failure(_, 1, .sunspecModelMissing(let wanted, let found), _, _) = $0 { (wanted, found) } else { nil } }
        #expect(missing.first?.0 == 203 && missing.first?.1 == [1, 201])
        let powers = all.compactMap { if case .sample(let s, 2, _, _, _) = $0 { s.values[.power] } else { nil } }
        #expect(!powers.isEmpty && powers.allSatisfy { $0 == 700 })
    }

    @Test func cancellingEndsALongBackOffWaitAtOnce() async throws {
        let reader = MapReader([:])
        let meter = PolledMeter(id: try MeterID(validating: "dead"), unit: 9, profile: BusPollerTests.threeRequests, period: .seconds(30))
        let failures = Atomic<Int>(0)
        let task = BusPoller(meters: [meter], reader: reader, timing: BusTiming()).start { e in
            if case .failure = e { failures.add(1, ordering: .relaxed) }
        }
        // Until the first attempt failed; the next one is 30 s away.
        let deadline = ContinuousClock.now + .seconds(20)
        while failures.load(ordering: .relaxed) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let clock = ContinuousClock()
        let before = clock.now
        task.cancel()
        await task.value
        // The poller was 30 s into waiting; cancellation must cut that short (generous bound, not a timing target).
        #expect(clock.now - before < .seconds(10))
        #expect(failures.load(ordering: .relaxed) == 1)
    }
}
