import MeterCore

/// One power or energy rail this machine offers, and how to read it.
///
/// Rails are identified by what they are, never by `hwmonN` numbers, which change from boot to boot: a
/// hwmon rail by its chip name, the device it hangs off (I²C address, PCI slot) and its channel label; a
/// RAPL domain by its zone and name; a GPU by its UUID.
public struct RailDescription: Sendable, Hashable, Identifiable, CustomStringConvertible {
    /// How a rail delivers its value.
    public enum Method: Sendable, Hashable {
        /// A power attribute in µW (`power*_average` or `power*_input`).
        case power(path: String)
        /// A power attribute in mW: the out-of-tree `ina3221x` IIO driver of L4T 32 and older (`in_power*_input`).
        case powerMilliwatts(path: String)
        /// Bus voltage (mV) times current (mA) gives µW: the INA3221 has no power attribute.
        case voltageTimesCurrent(voltagePath: String, currentPath: String)
        /// A cumulative energy attribute in µJ (hwmon `energy*_input`).
        case energy(path: String)
        /// RAPL `energy_uj` (µJ), which wraps at `max_energy_range_uj`.
        case raplEnergy(path: String, wrapsAtMicrojoules: UInt64?)
        /// An NVIDIA GPU read through NVML, by UUID.
        case nvml(uuid: String)
    }

    /// A stable id, usable as a key in configuration: "hwmon:ina3221@1-0040:VDD_GPU_SOC", "rapl:intel-rapl:0",
    /// "nvml:GPU-…".
    public var id: String
    public var source: SourceKind
    /// The chip or driver (`ina3221`, `amdgpu`, `package-0`, the GPU model).
    public var chip: String
    /// The channel label (`VDD_GPU_SOC`, `PPT`), or a name made from the attribute where the driver has none.
    public var label: String
    /// The device the chip belongs to, where sysfs says (`1-0040`, `0000:03:00.0`).
    public var device: String?
    public var method: Method
    /// What an operator should know before adding this rail to others (double counting, partial coverage).
    public var notes: [String]

    public init(id: String, source: SourceKind, chip: String, label: String, device: String?, method: Method, notes: [String] = []) {
        self.id = id
        self.source = source
        self.chip = chip
        self.label = label
        self.device = device
        self.method = method
        self.notes = notes
    }

    /// Whether the rail is a cumulative energy counter (account it as a counter) rather than power (integrate it).
    public var isEnergyCounter: Bool {
        switch method {
        case .energy, .raplEnergy: return true
        case .power, .powerMilliwatts, .voltageTimesCurrent: return false
        case .nvml: return false
        }
    }

    public var description: String { id }

    /// The kind of rail as board files name it (`rails: [ina3221, hwmon]`).
    public var family: RailFamily {
        switch method {
        case .nvml: return .nvml
        case .raplEnergy: return .rapl
        case .voltageTimesCurrent where chip == "ina3221": return .ina3221
        case .powerMilliwatts where chip == "ina3221x": return .ina3221
        default: return .hwmon
        }
    }
}

/// Rail families, spelled as in board files.
public enum RailFamily: String, Sendable, Hashable, CaseIterable {
    case nvml, hwmon, rapl, ina3221
}

/// One reading of a rail.
public enum RailReading: Sendable, Hashable {
    case power(microwatts: Int64)
    case energy(microjoules: UInt64)

    public var powerWatts: Double? {
        if case .power(let microwatts) = self { return Double(microwatts) / 1_000_000 }
        return nil
    }
}
