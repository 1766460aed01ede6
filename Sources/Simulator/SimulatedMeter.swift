import Foundation
import MeterCore
import Modbus
import Synchronization

/// How a simulated meter's power moves over time.
public enum LoadCurve: Sendable, Hashable {
    /// A constant power draw (W); negative values export.
    case constant(watts: Double)
    /// `base + amplitude × sin(2π t / period)`.
    case sine(baseWatts: Double, amplitudeWatts: Double, period: Duration)

    /// Power at `seconds` since the simulation started.
    public func watts(at seconds: Double) -> Double {
        switch self {
        case .constant(let w): return w
        case .sine(let base, let amplitude, let period):
            let p = Double(period.components.seconds) + Double(period.components.attoseconds) / 1e18
            return base + amplitude * sin(2 * Double.pi * seconds / max(p, 0.001))
        }
    }
}

/// One simulated meter: power follows a load curve, and the energy counters are the exact integral of that
/// power over monotonic time, so a reader that integrates power and one that reads counters agree.
public final class SimulatedMeter: Sendable {
    public let profile: MeterProfile
    public let curve: LoadCurve
    private struct State {
        var startNanos: UInt64
        var lastNanos: UInt64
        var lastWatts: Double
        var importWattHours: Double
        var exportWattHours: Double
    }
    private let state: Mutex<State>
    private let clock: any TimeSource

    public init(profile: MeterProfile, curve: LoadCurve, importWattHours: Double = 0, clock: any TimeSource = SystemTimeSource()) {
        self.profile = profile
        self.curve = curve
        self.clock = clock
        let now = clock.now().monotonicNanos
        self.state = Mutex(State(startNanos: now, lastNanos: now, lastWatts: curve.watts(at: 0), importWattHours: importWattHours, exportWattHours: 0))
    }

    /// Advances the simulation to now and returns every quantity in base units (W, Wh, V, A, Hz).
    public func values() -> [Quantity: Double] {
        let now = clock.now().monotonicNanos
        return state.withLock { s in
            if now > s.lastNanos {
                // Trapezoid between the last step and now; fine steps come from frequent polls.
                let watts = curve.watts(at: Double(now - s.startNanos) / 1e9)
                let hours = Double(now - s.lastNanos) / 3.6e12
                let energy = (s.lastWatts + watts) / 2 * hours
                if energy >= 0 { s.importWattHours += energy } else { s.exportWattHours -= energy }
                s.lastNanos = now
                s.lastWatts = watts
            }
            let power = s.lastWatts
            var v: [Quantity: Double] = [
                .power: power, .energyImport: s.importWattHours, .energyExport: s.exportWattHours,
                .frequency: 50, .powerFactor: 0.98,
            ]
            for (i, phase) in [Quantity.powerL1, .powerL2, .powerL3].enumerated() {
                v[phase] = power / 3
                v[[Quantity.voltageL1, .voltageL2, .voltageL3][i]] = 230
                v[[Quantity.currentL1, .currentL2, .currentL3][i]] = power / 3 / 230
            }
            return v
        }
    }

    /// The registers `[address, address + count)` of `space`, encoded as the profile says.
    /// Registers no field covers read as 0; a request that covers no field at all is an illegal address.
    public func registers(space: RegisterField.Space, address: Int, count: Int) -> ModbusServerResponse {
        let wanted = address..<(address + count)
        let fields = profile.fields.filter { $0.space == space && $0.registers.overlaps(wanted) }
        guard !fields.isEmpty else { return .exception(.illegalDataAddress) }
        let v = values()
        var words = [UInt16](repeating: 0, count: count)
        for field in fields {
            let raw = (v[field.quantity] ?? 0) / (field.unit.toBase ?? 1) / field.scale
            let encoded = encodeRegisters(.float(raw), as: field.type, wordOrder: field.wordOrder, byteOrder: field.byteOrder)
            for (i, w) in encoded.enumerated() where wanted.contains(field.address + i) {
                words[field.address + i - address] = w
            }
        }
        return .values(words)
    }
}

/// Several simulated meters behind one bus (unit ids), answering a libmodbus server.
public struct SimulatedBus: ModbusRequestHandler {
    public let meters: [Int: SimulatedMeter]

    public init(meters: [Int: SimulatedMeter]) { self.meters = meters }

    public func respond(to request: ModbusServerRequest) -> ModbusServerResponse {
        guard let meter = meters[request.unit] else { return .noAnswer }
        switch request.functionCode {
        case 3: return meter.registers(space: .holding, address: request.address, count: request.count)
        case 4: return meter.registers(space: .input, address: request.address, count: request.count)
        default: return .exception(.illegalFunction)
        }
    }
}
