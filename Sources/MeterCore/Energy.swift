/// An amount of energy in whole milliwatt-hours.
///
/// Settlement energy is never a floating-point number: integer mWh add up exactly across a year of
/// intervals, and 2^63 mWh is far beyond any meter.
public struct MilliwattHours: RawRepresentable, Hashable, Sendable, Comparable, Codable, AdditiveArithmetic,
    CustomStringConvertible, ExpressibleByIntegerLiteral
{
    public var rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public init(_ value: Int64) { self.rawValue = value }
    public init(integerLiteral value: Int64) { self.rawValue = value }

    public static let zero = MilliwattHours(0)

    /// Converts from watt-hours, rounding to the nearest mWh (half away from zero).
    public init(wattHours: Double) {
        self.rawValue = Int64((wattHours * 1000).rounded(.toNearestOrAwayFromZero))
    }

    /// Converts from kilowatt-hours, rounding to the nearest mWh.
    public init(kilowattHours: Double) {
        self.rawValue = Int64((kilowattHours * 1_000_000).rounded(.toNearestOrAwayFromZero))
    }

    public var kilowattHours: Double { Double(rawValue) / 1_000_000 }
    public var wattHours: Double { Double(rawValue) / 1000 }

    public static func + (lhs: MilliwattHours, rhs: MilliwattHours) -> MilliwattHours { .init(lhs.rawValue + rhs.rawValue) }
    public static func - (lhs: MilliwattHours, rhs: MilliwattHours) -> MilliwattHours { .init(lhs.rawValue - rhs.rawValue) }
    public static func < (lhs: MilliwattHours, rhs: MilliwattHours) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String { "\(rawValue) mWh" }

    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(Int64.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
