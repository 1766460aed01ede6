/// The accounting result for one meter stream and one settlement interval: what gets signed.
public struct IntervalResult: Sendable, Hashable, Codable {
    public var meter: MeterID
    public var source: SourceKind
    /// Interval start, inclusive, wall-clock milliseconds since the Unix epoch (UTC), aligned to the period.
    public var startMillis: Int64
    /// Interval end, exclusive.
    public var endMillis: Int64
    /// Cumulative imported energy at the interval end.
    public var importTotal: MilliwattHours
    /// Cumulative exported energy at the interval end.
    public var exportTotal: MilliwattHours
    /// Imported energy within the interval; never negative.
    public var importDelta: MilliwattHours
    /// Exported energy within the interval; never negative.
    public var exportDelta: MilliwattHours
    /// Average active power over the interval (W).
    public var averagePowerWatts: Double
    /// Highest active power seen in the interval (W).
    public var peakPowerWatts: Double
    /// Number of samples that fell into the interval.
    public var sampleCount: Int
    public var quality: Quality

    public init(
        meter: MeterID, source: SourceKind, startMillis: Int64, endMillis: Int64,
        importTotal: MilliwattHours, exportTotal: MilliwattHours,
        importDelta: MilliwattHours, exportDelta: MilliwattHours,
        averagePowerWatts: Double, peakPowerWatts: Double, sampleCount: Int, quality: Quality
    ) {
        self.meter = meter
        self.source = source
        self.startMillis = startMillis
        self.endMillis = endMillis
        self.importTotal = importTotal
        self.exportTotal = exportTotal
        self.importDelta = importDelta
        self.exportDelta = exportDelta
        self.averagePowerWatts = averagePowerWatts
        self.peakPowerWatts = peakPowerWatts
        self.sampleCount = sampleCount
        self.quality = quality
    }
}
