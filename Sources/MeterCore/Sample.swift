/// What kind of source a meter stream comes from. Carried in every signed record.
public enum SourceKind: String, Sendable, Hashable, Codable, CaseIterable {
    /// A revenue meter read over Modbus RTU or TCP (energy counters).
    case modbus
    /// An NVIDIA GPU read through NVML (energy counter or power).
    case gpu
    /// A hwmon power or energy channel (INA2xx, INA3221, amdgpu, …).
    case hwmon
    /// An Intel RAPL powercap domain (energy counter).
    case rapl
    /// An S0 pulse input on a GPIO line.
    case pulse
    /// A configured sum or difference of other streams.
    case virtual
}

/// How much a settlement system can trust an interval's energy. Ordered from best to worst.
public enum Quality: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    /// Read from the meter's own counters at (or close enough to) both boundaries.
    case measured
    /// A boundary value was interpolated between the polls around it.
    case interpolated
    /// Integrated from power, or otherwise derived rather than counted.
    case estimated
    /// Part or all of the interval has no data. For a counter source the energy is still exact over the
    /// whole gap (the counter difference), but its split across the gap's intervals is pro rata to time;
    /// for a power source the energy covers only what was seen.
    case gap

    private var rank: Int {
        switch self {
        case .measured: return 0
        case .interpolated: return 1
        case .estimated: return 2
        case .gap: return 3
        }
    }
    public static func < (lhs: Quality, rhs: Quality) -> Bool { lhs.rank < rhs.rank }
}

/// A point in time on both clocks the gateway uses: the wall clock labels intervals, the monotonic
/// clock measures elapsed time (integration, timeouts) and never jumps.
public struct Timestamp: Sendable, Hashable, Codable {
    /// Nanoseconds since the Unix epoch, UTC (CLOCK_REALTIME).
    public var wallNanos: Int64
    /// Nanoseconds on CLOCK_MONOTONIC (since boot, not counting suspend).
    public var monotonicNanos: UInt64

    public init(wallNanos: Int64, monotonicNanos: UInt64) {
        self.wallNanos = wallNanos
        self.monotonicNanos = monotonicNanos
    }

    /// Wall-clock milliseconds since the Unix epoch.
    public var wallMillis: Int64 { wallNanos / 1_000_000 }

    /// The instant halfway between this one and a later `end`, by the monotonic clock: a wall-clock step
    /// between the two moves neither half. A poll is stamped so: its values were read somewhere between the
    /// request going out and the answer coming back, and the middle is off by at most half the round trip.
    public func midpoint(to end: Timestamp) -> Timestamp {
        let half = end.monotonicNanos >= monotonicNanos ? (end.monotonicNanos - monotonicNanos) / 2 : 0
        return Timestamp(wallNanos: wallNanos + Int64(half), monotonicNanos: monotonicNanos + half)
    }
}

/// One poll of one source: the values it returned, and when.
public struct Sample: Sendable, Hashable {
    public var meter: MeterID
    public var time: Timestamp
    public var values: [Quantity: Double]

    public init(meter: MeterID, time: Timestamp, values: [Quantity: Double]) {
        self.meter = meter
        self.time = time
        self.values = values
    }
}
