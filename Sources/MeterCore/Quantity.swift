/// The unit a value is expressed in, as a meter or rail delivers it after scaling.
public enum Unit: String, Sendable, Hashable, Codable, CaseIterable {
    case watt = "W"
    case kilowatt = "kW"
    case voltAmpere = "VA"
    case voltAmpereReactive = "var"
    case wattHour = "Wh"
    case kilowattHour = "kWh"
    case milliwattHour = "mWh"
    case volt = "V"
    case ampere = "A"
    case hertz = "Hz"
    case powerFactor = "PF"
    case degreeCelsius = "°C"
    case none = ""

    /// The factor that converts a value in this unit to the base unit of its dimension
    /// (W for power, Wh for energy), or nil for units that have no such base.
    public var toBase: Double? {
        switch self {
        case .watt, .wattHour, .voltAmpere, .voltAmpereReactive: return 1
        case .kilowatt, .kilowattHour: return 1000
        case .milliwattHour: return 0.001
        default: return nil
        }
    }
}

/// A named measured quantity, such as total active power or imported energy.
///
/// Names are data (meter profiles name them), so this is an open set of strings with the
/// well-known ones spelled out as constants.
public struct Quantity: RawRepresentable, Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (lhs: Quantity, rhs: Quantity) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(String.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    /// Total active power (W), positive when importing.
    public static let power = Quantity("power")
    /// Cumulative imported active energy (Wh).
    public static let energyImport = Quantity("energy_import")
    /// Cumulative exported active energy (Wh).
    public static let energyExport = Quantity("energy_export")
    public static let frequency = Quantity("frequency")
    public static let powerFactor = Quantity("power_factor")
    public static let voltageL1 = Quantity("voltage_l1")
    public static let voltageL2 = Quantity("voltage_l2")
    public static let voltageL3 = Quantity("voltage_l3")
    public static let currentL1 = Quantity("current_l1")
    public static let currentL2 = Quantity("current_l2")
    public static let currentL3 = Quantity("current_l3")
    public static let powerL1 = Quantity("power_l1")
    public static let powerL2 = Quantity("power_l2")
    public static let powerL3 = Quantity("power_l3")
}
