import MeterCore

/// Energy in the accounting's internal unit, half a femtojoule (5 × 10⁻¹⁶ J), as an unsigned 128-bit integer.
///
/// Why this unit: every source lands on it exactly. A trapezoid of power in µW over nanoseconds,
/// (P₁ + P₂) × Δt, is a whole number of half-femtojoules; so are mJ (NVML), µJ (hwmon, RAPL), Wh (meters)
/// and most pulse constants. Sums never round, and whole mWh are taken only at interval boundaries
/// (`floor(total / unitsPerMilliwattHour)`), so no sub-mWh remainder is ever lost or counted twice.
/// One year of 10 MW is about 6 × 10²⁹ units; `UInt128` holds 3.4 × 10³⁸.
public struct FineEnergy: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public var units: UInt128

    public init(units: UInt128) { self.units = units }

    public static let zero = FineEnergy(units: 0)
    /// Half-femtojoules in one milliwatt-hour: 3.6 J × 2 × 10¹⁵.
    public static let unitsPerMilliwattHour: UInt128 = 7_200_000_000_000_000
    /// Half-femtojoules in one watt-nanosecond (1 nJ).
    public static let unitsPerWattNanosecond: UInt128 = 2_000_000

    /// The whole milliwatt-hours in this energy, rounded down; the remainder stays in `units`.
    public var wholeMilliwattHours: MilliwattHours {
        MilliwattHours(Int64(units / Self.unitsPerMilliwattHour))
    }

    public static func + (lhs: FineEnergy, rhs: FineEnergy) -> FineEnergy { FineEnergy(units: lhs.units + rhs.units) }
    public static func - (lhs: FineEnergy, rhs: FineEnergy) -> FineEnergy { FineEnergy(units: lhs.units - rhs.units) }
    public static func += (lhs: inout FineEnergy, rhs: FineEnergy) { lhs.units += rhs.units }
    public static func < (lhs: FineEnergy, rhs: FineEnergy) -> Bool { lhs.units < rhs.units }

    public var description: String { "\(units) × 0.5 fJ" }

    // Encoded as a decimal string: JSON numbers beyond 2^53 do not survive every decoder.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = UInt128(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an unsigned integer")
        }
        self.units = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(units))
    }
}

/// `floor(x × y / z)` without overflow in the product. The quotient must fit 128 bits (it does whenever `y ≤ z`).
@inline(__always)
func multiplyDivide(_ x: UInt128, _ y: UInt128, _ z: UInt128) -> UInt128 {
    precondition(z > 0, "division by zero")
    if x <= UInt128(UInt64.max) && y <= UInt128(UInt64.max) {
        // Both fit 64 bits, so the product fits 128: skip the generic wide multiplication.
        let product = UInt128(UInt64(truncatingIfNeeded: x)) * UInt128(UInt64(truncatingIfNeeded: y))
        return z == 1 ? product : product / z
    }
    let product = x.multipliedFullWidth(by: y)
    // Almost always the product fits 128 bits; the 256-by-128 division is only needed when it does not.
    if product.high == 0 { return z == 1 ? product.low : product.low / z }
    return z.dividingFullWidth(product).quotient
}

/// How much energy one count of a counter is worth: an exact fraction of half-femtojoules, so that odd
/// pulse constants (e.g. 375 or 7 imp/kWh) and decimal register scales (0.1 Wh) stay exact.
///
/// Energy is always computed from the cumulative count, `floor(count × numerator / denominator)`, so the
/// rounding never accumulates: differences telescope.
public struct CounterScale: Hashable, Sendable, Codable, CustomStringConvertible {
    public let numerator: UInt128
    public let denominator: UInt128

    /// A scale of `numerator / denominator` half-femtojoules per count (reduced).
    public init(unitsPerCount numerator: UInt128, per denominator: UInt128 = 1) {
        precondition(numerator > 0 && denominator > 0, "a counter scale must be positive")
        var a = numerator, b = denominator
        while b != 0 { (a, b) = (b, a % b) }
        self.numerator = numerator / a
        self.denominator = denominator / a
    }

    /// `numerator / denominator` watt-hours per count (e.g. 1/10 for a 0.1 Wh register, 10 for 0.01 kWh).
    public static func wattHours(_ numerator: UInt64, per denominator: UInt64 = 1) -> CounterScale {
        CounterScale(unitsPerCount: UInt128(numerator) * 1000 * FineEnergy.unitsPerMilliwattHour, per: UInt128(denominator))
    }
    /// One count is one millijoule (NVML total energy).
    public static let millijoules = CounterScale(unitsPerCount: 2_000_000_000_000)
    /// One count is one microjoule (hwmon energy*_input, RAPL energy_uj).
    public static let microjoules = CounterScale(unitsPerCount: 2_000_000_000)
    /// One count is one milliwatt-hour.
    public static let milliwattHours = CounterScale(unitsPerCount: FineEnergy.unitsPerMilliwattHour)
    /// One count is one pulse of an S0 output with `impulsesPerKilowattHour` pulses per kWh.
    public static func impulses(perKilowattHour impulses: UInt64) -> CounterScale {
        CounterScale(unitsPerCount: 1_000_000 * FineEnergy.unitsPerMilliwattHour, per: UInt128(impulses))
    }

    /// The energy of `count` counts, rounded down to a whole half-femtojoule.
    public func energy(ofCount count: UInt128) -> FineEnergy {
        FineEnergy(units: multiplyDivide(count, numerator, denominator))
    }

    /// The most counts whose energy does not exceed `energy`.
    public func counts(within energy: FineEnergy) -> UInt128 {
        multiplyDivide(energy.units, denominator, numerator)
    }

    public var description: String { denominator == 1 ? "\(numerator) × 0.5 fJ/count" : "\(numerator)/\(denominator) × 0.5 fJ/count" }

    private enum CodingKeys: String, CodingKey { case numerator, denominator }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let n = try c.decode(String.self, forKey: .numerator), d = try c.decode(String.self, forKey: .denominator)
        guard let num = UInt128(n), let den = UInt128(d), num > 0, den > 0 else {
            throw DecodingError.dataCorruptedError(forKey: .numerator, in: c, debugDescription: "counter scale \(n)/\(d) is not a positive fraction")
        }
        self.init(unitsPerCount: num, per: den)
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(String(numerator), forKey: .numerator)
        try c.encode(String(denominator), forKey: .denominator)
    }
}
