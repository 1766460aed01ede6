import MeterCore
import Modbus
import Simulator
import TestSupport
import Testing

/// A monotonic clock the test moves by hand.
final class ManualTime: TimeSource, @unchecked Sendable {
    // Safe: the tests move it from one task only.
    var nanos: UInt64 = 1_000_000_000
    func now() -> Timestamp { Timestamp(wallNanos: Int64(nanos), monotonicNanos: nanos) }
}

@Suite(.timeLimit(.minutes(5))) struct SimulatedMeterTests {
    static let profile = try! MeterProfile.load(path: "\(repositoryRoot)/profiles/eastron-sdm630.yaml")

    @Test func energyIsTheIntegralOfPower() {
        let time = ManualTime()
        let meter = SimulatedMeter(profile: Self.profile, curve: .constant(watts: 3600), clock: time)
        time.nanos += 3_600_000_000_000   // one hour at 3.6 kW
        let v = meter.values()
        #expect(abs(v[.energyImport]! - 3600) < 1e-6)
        #expect(v[.power] == 3600)
    }

    @Test func servesTheProfileOverRealLibmodbus() async throws {
        let time = ManualTime()
        let meter = SimulatedMeter(profile: Self.profile, curve: .constant(watts: 1000), importWattHours: 12_345, clock: time)
        let server = try ModbusTCPServer(port: 0, handler: SimulatedBus(meters: [3: meter]))
        defer { server.stop() }
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: server.port))
        let power = try await client.readInputRegisters(unit: 3, address: 0x34, count: 2)
        #expect(decodeRegisters(power, as: .float32) == .float(1000))
        let energy = try await client.readInputRegisters(unit: 3, address: 0x48, count: 2)
        #expect(decodeRegisters(energy, as: .float32)?.doubleValue == Double(Float(12.345)))
    }
}
