import Foundation
import MeterCore
import Modbus
import Simulator
import TestSupport
import Testing

/// Every shipped profile, loaded from profiles/.
let shippedProfiles: [MeterProfile] = {
    let library = try! ProfileLibrary(directories: ["\(repositoryRoot)/profiles"])
    return library.profiles.values.sorted { $0.id < $1.id }
}()

/// How close a decoded value must be to the simulated one: the register's resolution.
func resolution(_ field: RegisterField, value: Double) -> Double {
    switch field.type {
    case .float32: return max(abs(value) * 1e-6, 1e-9)
    case .float64: return 1e-9
    default:
        // One raw unit, times the largest exponent a SunSpec scale factor may take for this value.
        let unit = abs(field.scale) * (field.unit.toBase ?? 1)
        return field.scaleFactorAddress == nil ? unit * 0.5 + 1e-9 : max(unit, abs(value) * 1e-4)
    }
}

/// Reads a whole profile through a real libmodbus client and checks every value against the simulator.
func checkRoundTrip(_ profile: MeterProfile, meter: SimulatedMeter, reader: any RegisterReader, unit: Int) async throws -> Int {
    var located = profile
    if let model = profile.sunspecModel {
        let device = try #require(try await SunSpecDiscovery.discover(unit: unit, reader: reader))
        let entry = try #require(device.models.first { $0.id == model }, "model \(model) in \(device.models)")
        #expect(device.manufacturer == "MeterGate")
        #expect(device.models.first?.id == 1)
        located = profile.located(at: entry.address)
    }
    let readout = try await MeterReader(profile: located).read(unit: unit, from: reader)
    let expected = meter.values()
    #expect(readout.refused.isEmpty, "\(profile.id): \(readout.refused)")
    for field in profile.fields {
        let want = try #require(expected[field.quantity], "\(profile.id): the simulator has no \(field.quantity)")
        let got = try #require(readout.values[field.quantity], "\(profile.id): \(field.quantity) missing from \(readout.values.keys.sorted())")
        #expect(abs(got - want) <= resolution(field, value: want), "\(profile.id) \(field.quantity): read \(got), simulated \(want)")
    }
    return readout.requests
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct SimulatorRoundTripTests {
    @Test func everyProfileOverTCP() async throws {
        #expect(shippedProfiles.count >= 12)
        let time = ManualTime()
        var meters: [Int: SimulatedMeter] = [:]
        for (i, profile) in shippedProfiles.enumerated() {
            meters[i + 1] = SimulatedMeter(profile: profile, curve: .constant(watts: 1234.5 + Double(i)), importWattHours: 98_765.4, clock: time)
        }
        time.nanos += 1_800_000_000_000   // half an hour of load, so export and import differ from their start
        let server = try ModbusTCPServer(port: 0, handler: SimulatedBus(meters: meters))
        defer { server.stop() }
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: server.port))
        for (i, profile) in shippedProfiles.enumerated() {
            let requests = try await checkRoundTrip(profile, meter: meters[i + 1]!, reader: client, unit: i + 1)
            print("TCP \(profile.id): \(profile.fields.count) values in \(requests) request(s)")
        }
    }

    @Test func everyProfileOverRTUThroughASocatPTYPair() async throws {
        let pty = try SocatPTYPair()
        let time = ManualTime()
        var meters: [Int: SimulatedMeter] = [:]
        for (i, profile) in shippedProfiles.enumerated() {
            meters[i + 1] = SimulatedMeter(profile: profile, curve: .constant(watts: -750 - Double(i)), importWattHours: 5_000, exportWattHours: 1_000, clock: time)
        }
        time.nanos += 600_000_000_000
        let server = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 115_200), handler: SimulatedBus(meters: meters))
        defer { server.stop() }
        let client = try ModbusConnection(.rtu(SerialSettings(device: pty.b, baud: 115_200)), responseTimeout: .seconds(1))
        for (i, profile) in shippedProfiles.enumerated() {
            let requests = try await checkRoundTrip(profile, meter: meters[i + 1]!, reader: client, unit: i + 1)
            print("RTU \(profile.id) at unit \(i + 1): \(requests) request(s)")
        }
        #expect(server.statistics.badFrames == 0)
    }
}
