import Foundation
import MeterCore
import Modbus
import Synchronization

/// One simulated meter: power follows a load curve, and the energy counters are the integral of that
/// power over monotonic time (trapezoids no longer than one second), so a reader that integrates power and
/// one that reads counters agree. It serves any profile's register map, SunSpec included, and can show faults.
public final class SimulatedMeter: Sendable {
    public let profile: MeterProfile
    public let curve: LoadCurve
    public let faults: [Fault]
    /// The SunSpec layout served when the profile is a SunSpec model.
    public static let sunspecBase = 40000
    /// Where the meter model starts: after the marker (2) and the common model (2 + 66).
    public static let sunspecModelAddress = sunspecBase + 2 + 2 + 66

    private struct State {
        var startNanos: UInt64
        var lastNanos: UInt64
        var lastWatts: Double
        var importWattHours: Double
        var exportWattHours: Double
        var requests: Int = 0
        var resetDone = false
        var replaced = false
        /// The serial number served now: a replacement meter has its own.
        var serialNumber: String
    }
    private let state: Mutex<State>
    private let clock: any TimeSource

    public init(profile: MeterProfile, curve: LoadCurve, importWattHours: Double = 0, exportWattHours: Double = 0,
                faults: [Fault] = [], serialNumber: String = "SIM0001", clock: any TimeSource = SystemTimeSource()) {
        self.profile = profile
        self.curve = curve
        self.faults = faults
        self.clock = clock
        let now = clock.now().monotonicNanos
        self.state = Mutex(State(startNanos: now, lastNanos: now, lastWatts: curve.watts(at: 0),
                                 importWattHours: importWattHours, exportWattHours: exportWattHours, serialNumber: serialNumber))
    }

    /// The serial number the meter serves now (a replaced meter has a new one).
    public var serialNumber: String {
        let now = clock.now().monotonicNanos
        return state.withLock { s in
            advance(&s, to: now)
            return s.serialNumber
        }
    }

    private func serialNumberNow() -> String { serialNumber }

    /// The serial as a number, for profiles that keep it in an integer register: `SIM00042` → 42, and a replacement
    /// meter (`…R`) adds 500000 per replacement.
    func numericSerial(_ serial: String) -> String {
        let replacements = serial.reversed().prefix { $0 == "R" }.count
        let digits = serial.filter(\.isNumber)
        return String((UInt64(digits) ?? 1) + UInt64(replacements) * 500_000)
    }

    /// Seconds since the simulation started.
    public var elapsedSeconds: Double { state.withLock { Double(clock.now().monotonicNanos &- $0.startNanos) / 1e9 } }

    /// Advances the simulation to now and returns every quantity in base units (W, Wh, V, A, Hz, PF).
    public func values() -> [Quantity: Double] {
        let now = clock.now().monotonicNanos
        return state.withLock { s in
            advance(&s, to: now)
            return Self.quantities(power: s.lastWatts, importWh: s.importWattHours, exportWh: s.exportWattHours)
        }
    }

    private func advance(_ s: inout State, to now: UInt64) {
        // A counter reset takes effect at its own time, not at the next read: integrate up to it, zero, go on.
        for fault in faults where fault.kind == .counterReset && !s.resetDone {
            let at = s.startNanos &+ UInt64(max(0, fault.after) * 1e9)
            guard at <= now else { continue }
            integrate(&s, to: max(at, s.lastNanos))
            s.importWattHours = 0
            s.exportWattHours = 0
            s.resetDone = true
        }
        // A replacement meter: the old one's energy stops at the swap, the new one counts from its own start.
        for fault in faults where !s.replaced {
            guard case .meterReplaced(let startWattHours) = fault.kind else { continue }
            let at = s.startNanos &+ UInt64(max(0, fault.after) * 1e9)
            guard at <= now else { continue }
            integrate(&s, to: max(at, s.lastNanos))
            s.importWattHours = startWattHours
            s.exportWattHours = 0
            s.serialNumber += "R"
            s.replaced = true
        }
        integrate(&s, to: now)
    }

    private func integrate(_ s: inout State, to now: UInt64) {
        guard now > s.lastNanos else { return }
        // Trapezoids of at most one second keep the integral close for sine and recorded curves.
        var t = s.lastNanos
        while t < now {
            let next = min(now, t + 1_000_000_000)
            let watts = curve.watts(at: Double(next - s.startNanos) / 1e9)
            let energy = (s.lastWatts + watts) / 2 * (Double(next - t) / 3.6e12)
            if energy >= 0 { s.importWattHours += energy } else { s.exportWattHours -= energy }
            s.lastWatts = watts
            t = next
        }
        s.lastNanos = now
    }

    /// Every quantity the simulator knows, derived from total power and the counters (balanced phases,
    /// 230 V, 50 Hz, power factor 0.98).
    static func quantities(power: Double, importWh: Double, exportWh: Double) -> [Quantity: Double] {
        let pf = 0.98
        let apparent = abs(power) / pf
        let reactive = (apparent * apparent - power * power).squareRoot()
        var v: [Quantity: Double] = [
            .power: power, .energyImport: importWh, .energyExport: exportWh, .frequency: 50, .powerFactor: pf,
            Quantity("energy_total"): importWh + exportWh,
            Quantity("power_import"): max(power, 0), Quantity("power_export"): max(-power, 0),
            Quantity("apparent_power"): apparent, Quantity("reactive_power"): reactive,
            Quantity("voltage"): 230, Quantity("current_total"): abs(power) / pf / 230,
        ]
        for i in 1...3 {
            v[Quantity("power_l\(i)")] = power / 3
            v[Quantity("voltage_l\(i)")] = 230
            v[Quantity("current_l\(i)")] = abs(power) / 3 / pf / 230
            v[Quantity("power_factor_l\(i)")] = pf
            v[Quantity("apparent_power_l\(i)")] = apparent / 3
            v[Quantity("reactive_power_l\(i)")] = reactive / 3
            v[Quantity("energy_import_l\(i)")] = importWh / 3
            v[Quantity("energy_export_l\(i)")] = exportWh / 3
        }
        for pair in ["l1_l2", "l2_l3", "l3_l1"] { v[Quantity("voltage_\(pair)")] = 230 * 3.0.squareRoot() }
        return v
    }

    /// Answers one request: faults first, then the registers `[address, address + count)` of `space`.
    public func respond(space: RegisterField.Space, address: Int, count: Int) -> ModbusServerResponse {
        let (elapsed, n) = state.withLock { s -> (Double, Int) in
            s.requests += 1
            return (Double(clock.now().monotonicNanos &- s.startNanos) / 1e9, s.requests)
        }
        var delay: Duration?
        var corrupt = false
        for fault in faults where fault.isActive(at: elapsed) && (n - 1) % fault.every == 0 {
            switch fault.kind {
            case .noAnswer: return .noAnswer
            case .exception(let e): return .exception(e)
            case .slowAnswer(let d): delay = d
            case .corruptedFrame: corrupt = true
            case .counterReset, .meterReplaced, .counterRollover: break
            }
        }
        var response = registers(space: space, address: address, count: count)
        if corrupt, case .values(let words) = response { response = .corrupted(words) }
        if let delay { response = .delayed(delay, response) }
        return response
    }

    /// The registers `[address, address + count)` of `space`, encoded as the profile says.
    /// Registers no field covers read as 0; a request that covers no field at all is an illegal address,
    /// and one longer than the profile's `max_registers` an illegal value, as real meters answer.
    public func registers(space: RegisterField.Space, address: Int, count: Int) -> ModbusServerResponse {
        guard count >= 1 && count <= profile.maxRegistersPerRequest else { return .exception(.illegalDataValue) }
        let wanted = address..<(address + count)
        let v = values()
        var words = [UInt16](repeating: 0, count: count)
        var covered = false
        func put(_ at: Int, _ encoded: [UInt16]) {
            for (i, w) in encoded.enumerated() where wanted.contains(at + i) {
                words[at + i - address] = w
                covered = true
            }
        }
        var fields = profile.fields
        if profile.sunspecModel != nil {
            guard space == .holding else { return .exception(.illegalFunction) }
            fields = fields.map { $0.shifted(by: Self.sunspecModelAddress) }
            for (at, header) in sunspecHeader() { put(at, header) }
            for (sfAddress, exponent) in sunspecScaleFactors(fields: fields, values: v) {
                put(sfAddress, [UInt16(bitPattern: Int16(exponent))])
            }
        }
        if let identity = profile.identity, identity.space == space, let encoded = identity.registers(for: numericSerial(serialNumberNow())) {
            put(identity.address, encoded)
        }
        for check in profile.identification where check.space == space {
            if case .oneOf(let codes) = check.expectation, let code = codes.first {
                put(check.address, encodeRegisters(.unsigned(code), as: check.type, wordOrder: check.wordOrder))
            }
        }
        let sfs = profile.sunspecModel != nil ? sunspecScaleFactors(fields: fields, values: v) : [:]
        for field in fields where field.space == space && field.registers.overlaps(wanted) {
            guard let value = v[field.quantity] else {
                put(field.address, encodeRegisters(.unsigned(field.sentinels.first ?? 0), as: field.type, wordOrder: field.wordOrder, byteOrder: field.byteOrder))
                continue
            }
            var raw = rawValue(value, field: field, exponent: field.scaleFactorAddress.flatMap { sfs[$0] } ?? 0)
            if isEnergy(field.quantity) { raw = rolledOver(raw, type: field.type) }
            put(field.address, encodeRegisters(.float(raw), as: field.type, wordOrder: field.wordOrder, byteOrder: field.byteOrder))
        }
        return covered ? .values(words) : .exception(.illegalDataAddress)
    }

    private func isEnergy(_ q: Quantity) -> Bool { q.rawValue.hasPrefix("energy_") }

    /// The raw register value that decodes to `value` (base units) for `field`.
    func rawValue(_ value: Double, field: RegisterField, exponent: Int) -> Double {
        var raw = value / (field.unit.toBase ?? 1) / field.scale
        if exponent > 0 { for _ in 0..<exponent { raw /= 10 } } else if exponent < 0 { for _ in 0..<(-exponent) { raw *= 10 } }
        return field.type == .float32 || field.type == .float64 ? raw : raw.rounded()
    }

    private func rolledOver(_ raw: Double, type: RegisterType) -> Double {
        let elapsed = elapsedSeconds
        for fault in faults where fault.isActive(at: elapsed) {
            guard case .counterRollover(let modulus) = fault.kind else { continue }
            let m: Double
            if let modulus { m = modulus } else {
                switch type {
                case .u16: m = 65536
                case .i16: m = 32768
                case .u32: m = 4_294_967_296
                case .i32: m = 2_147_483_648
                case .u64: m = 18_446_744_073_709_551_616
                case .i64: m = 9_223_372_036_854_775_808
                case .float32, .float64: m = 100_000_000   // no natural wrap: a display-style 8-digit counter
                }
            }
            return raw.truncatingRemainder(dividingBy: m)
        }
        return raw
    }

    /// The SunSpec marker, common model (1), the meter model's ID/L header and the end marker.
    private func sunspecHeader() -> [(Int, [UInt16])] {
        let base = Self.sunspecBase
        var common: [UInt16] = [1, 66]
        common += sunspecRegisters("MeterGate", registers: 16)
        common += sunspecRegisters("Simulated \(profile.model)", registers: 16)
        common += sunspecRegisters("", registers: 8)
        common += sunspecRegisters("1.0", registers: 8)
        common += sunspecRegisters(serialNumber, registers: 16)
        common += [1, 0x8000]   // DA (device address) and pad
        let modelLength = 105
        return [
            (base, SunSpecDiscovery.marker),
            (base + 2, common),
            (Self.sunspecModelAddress, [UInt16(profile.sunspecModel ?? 0), UInt16(modelLength)]),
            (Self.sunspecModelAddress + 2 + modelLength, [SunSpecDiscovery.endMarker, 0]),
        ]
    }

    /// Per scale-factor register, the smallest exponent from -2 up at which every value it scales fits its
    /// type: as real devices do, the exponent moves when values grow, so it must be read with the values.
    private func sunspecScaleFactors(fields: [RegisterField], values v: [Quantity: Double]) -> [Int: Int] {
        var result: [Int: Int] = [:]
        for sf in Set(fields.compactMap(\.scaleFactorAddress)) {
            let users = fields.filter { $0.scaleFactorAddress == sf }
            var exponent = -2
            while exponent < 10 {
                let fits = users.allSatisfy { f in
                    guard let value = v[f.quantity] else { return true }
                    let raw = abs(rawValue(value, field: f, exponent: exponent))
                    switch f.type {
                    case .i16: return raw <= 32767
                    case .u16: return raw <= 65534
                    case .u32: return raw <= 4_294_967_294
                    case .i32: return raw <= 2_147_483_647
                    default: return true
                    }
                }
                if fits { break }
                exponent += 1
            }
            result[sf] = exponent
        }
        return result
    }
}

/// Several simulated meters behind one bus (unit ids), answering a libmodbus server.
public struct SimulatedBus: ModbusRequestHandler {
    public let meters: [Int: SimulatedMeter]

    public init(meters: [Int: SimulatedMeter]) { self.meters = meters }

    public func respond(to request: ModbusServerRequest) -> ModbusServerResponse {
        guard let meter = meters[request.unit] else { return .noAnswer }
        switch request.functionCode {
        case 3: return meter.respond(space: .holding, address: request.address, count: request.count)
        case 4: return meter.respond(space: .input, address: request.address, count: request.count)
        default: return .exception(.illegalFunction)
        }
    }
}
