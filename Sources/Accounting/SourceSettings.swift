import MeterCore

/// Settings every accounted source shares: where its intervals fall and how it treats time.
public struct SourceSettings: Sendable, Hashable, Codable {
    public var meter: MeterID
    public var source: SourceKind
    /// The settlement period (from an `IntervalGrid`).
    public var periodMillis: Int64
    /// Samples further apart than this (monotonic time) are a gap: power is not integrated across it, and a
    /// counter's difference across it is spread pro rata over the intervals it spans, which are flagged `gap`.
    public var maximumGapNanos: Int64
    /// A change of (wall − monotonic) beyond this between two samples is a wall-clock step.
    public var clockStepToleranceNanos: Int64
    /// A sample this close to an interval boundary counts as taken at it (the boundary value is measured,
    /// not interpolated).
    public var boundaryToleranceNanos: Int64

    public init(meter: MeterID, source: SourceKind, grid: IntervalGrid,
                maximumGapNanos: Int64 = 300_000_000_000,
                clockStepToleranceNanos: Int64 = 2_000_000_000,
                boundaryToleranceNanos: Int64 = 500_000_000) {
        self.meter = meter
        self.source = source
        self.periodMillis = grid.periodMillis
        self.maximumGapNanos = maximumGapNanos
        self.clockStepToleranceNanos = clockStepToleranceNanos
        self.boundaryToleranceNanos = boundaryToleranceNanos
    }
}

/// A cumulative count that can exceed 64 bits, stored as a decimal string.
struct BigCount: Sendable, Hashable, Codable {
    var value: UInt128

    init(_ value: UInt128) { self.value = value }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let value = UInt128(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an unsigned integer")
        }
        self.value = value
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}
