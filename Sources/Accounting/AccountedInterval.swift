import MeterCore

/// Something the accounting noticed while building an interval: the reason behind its quality flag.
public enum AccountingEvent: Sendable, Hashable, Codable {
    /// The counter wrapped at its range; the energy across the wrap was paid.
    case rollover(counts: UInt64)
    /// The counter went backwards without a plausible wrap (meter replaced or cleared, driver reloaded).
    /// The energy between the last poll and the reset is missing; `paidCounts` were paid after it.
    case reset(from: UInt64, to: UInt64, paidCounts: UInt64)
    /// Another meter answers (its identity changed): its counters became the baseline; the step was not paid.
    case meterReplaced(fromCounts: UInt64, toCounts: UInt64)
    /// The counter rose by more than rated power × elapsed time allows: flagged, not paid.
    case implausibleIncrease(counts: UInt64, limit: UInt64)
    /// Samples were further apart than the configured gap limit (monotonic nanoseconds).
    case gap(nanoseconds: Int64)
    /// The wall clock stepped by this much relative to the monotonic clock (positive: forward).
    case clockStep(nanoseconds: Int64)
    /// The gateway restarted; the wall clock advanced this much between the saved state and the first new sample.
    case restart(downtimeNanoseconds: Int64)
    /// Energy that belonged before the last closed interval's end (wall clock stepped back, or an interval was
    /// closed for lack of samples) was booked into this interval instead.
    case lateEnergy

    /// Whether this is a ``clockStep(nanoseconds:)``.
    public var isClockStep: Bool {
        if case .clockStep = self { return true }
        return false
    }
}

/// One source's result for one settlement interval, with the events behind its quality.
public struct AccountedInterval: Sendable, Hashable, Codable {
    public var result: IntervalResult
    public var events: [AccountingEvent]

    public init(result: IntervalResult, events: [AccountingEvent]) {
        self.result = result
        self.events = events
    }
}

/// Input that the accounting refuses; the state is left exactly as it was.
public enum AccountingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A sample's monotonic time is before the previous sample's, within one boot.
    case monotonicTimeWentBackwards(meter: MeterID, previousNanos: UInt64, newNanos: UInt64)
    /// A power value that is not a finite number.
    case powerNotFinite(meter: MeterID, value: Double)
    /// An export count on a source configured without one, or the reverse.
    case exportChannelMismatch(meter: MeterID, configured: Bool)
    /// A snapshot that belongs to another source or another configuration.
    case snapshotMismatch(meter: MeterID, reason: String)
    /// A virtual meter was given results that do not fit it.
    case virtualMeterInput(meter: MeterID, reason: String)

    public var description: String {
        switch self {
        case .monotonicTimeWentBackwards(let m, let p, let n):
            return "meter \(m): sample at monotonic \(n) ns is before the previous one at \(p) ns; samples must arrive in order"
        case .powerNotFinite(let m, let v):
            return "meter \(m): power value \(v) is not a finite number"
        case .exportChannelMismatch(let m, let configured):
            return configured
                ? "meter \(m): the source is configured with an export counter but the reading has none"
                : "meter \(m): the reading has an export counter but the source is configured without one"
        case .snapshotMismatch(let m, let reason):
            return "meter \(m): saved accounting state does not fit this source: \(reason)"
        case .virtualMeterInput(let m, let reason):
            return "virtual meter \(m): \(reason)"
        }
    }
}
