import MeterCore

/// Turns successive power readings (a GPU without an energy counter, an INA rail, amdgpu) into settlement
/// intervals by trapezoidal integration on the monotonic clock.
///
/// Power is taken in whole microwatts; a trapezoid (P₁ + P₂) × Δt in µW·ns is then an exact number of
/// half-femtojoules, so integration itself never rounds. Negative power is export; a trapezoid that crosses
/// zero is split at the crossing. Samples further apart than the gap limit are not bridged: the span between
/// them carries no energy and its intervals are flagged `gap`. Every other interval is `estimated`, because
/// the energy is derived from power rather than counted.
public struct PowerAccountant: Sendable {
    public struct Reading: Sendable, Hashable {
        public var time: Timestamp
        public var powerWatts: Double

        public init(time: Timestamp, powerWatts: Double) {
            self.time = time
            self.powerWatts = powerWatts
        }
    }

    struct State: Sendable, Hashable, Codable {
        var clock: SampleClock
        var assembler: IntervalAssembler
        var lastMicrowatts: Int64
    }

    /// Everything needed to continue after a restart: the last power value and the open interval.
    public struct Snapshot: Sendable, Hashable, Codable {
        public let meter: MeterID
        let periodMillis: Int64
        let state: State?
        /// Before the first reading: the next interval to close as a gap (``SilentStart``); nil in snapshots made before.
        var awaiting: Int64? = nil
    }

    public let settings: SourceSettings
    private let bootID: String?
    private var state: State?
    /// While no reading has come: the intervals to close as gaps.
    private var silent: SilentStart?

    /// Power beyond this magnitude (W) is refused as malformed: it would overflow the µW arithmetic.
    public static let largestPowerWatts = 1e12

    public init(settings: SourceSettings, bootID: String? = nil) {
        self.settings = settings
        self.bootID = bootID
    }

    /// Continues a stream from a snapshot taken before a restart; the downtime becomes explicit gap intervals.
    public init(settings: SourceSettings, restoring snapshot: Snapshot, bootID: String? = nil) throws(AccountingError) {
        guard snapshot.meter == settings.meter else {
            throw .snapshotMismatch(meter: settings.meter, reason: "it was saved for meter \(snapshot.meter)")
        }
        guard snapshot.periodMillis == settings.periodMillis else {
            throw .snapshotMismatch(meter: settings.meter, reason: "interval \(snapshot.periodMillis) ms, configured \(settings.periodMillis) ms")
        }
        self.settings = settings
        self.bootID = bootID
        self.state = snapshot.state
        self.state?.clock.resume(bootID: bootID)
        if snapshot.state == nil { self.silent = snapshot.awaiting.map(SilentStart.init(nextStartNanos:)) }
    }

    public func snapshot() -> Snapshot {
        Snapshot(meter: settings.meter, periodMillis: settings.periodMillis, state: state, awaiting: state == nil ? silent?.nextStartNanos : nil)
    }

    /// Cumulative import and export energy integrated so far, exact.
    public var totals: (imported: FineEnergy, exported: FineEnergy)? {
        state.map { ($0.assembler.totals.imported, $0.assembler.totals.exported) }
    }

    /// Books one power reading; returns the intervals it completes. Throws (changing nothing) on a non-finite
    /// or absurd power value or out-of-order time.
    public mutating func add(_ reading: Reading) throws(AccountingError) -> [AccountedInterval] {
        guard reading.powerWatts.isFinite, abs(reading.powerWatts) < Self.largestPowerWatts else {
            throw .powerNotFinite(meter: settings.meter, value: reading.powerWatts)
        }
        let microwatts = Int64((reading.powerWatts * 1_000_000).rounded())
        guard var state else {
            let silentIntervals = silent?.close(upTo: reading.time.wallNanos, settings: settings) ?? []
            // Never placed before what the silent intervals closed (a wall clock that went back).
            var assembler = IntervalAssembler(
                meter: settings.meter, source: settings.source, periodMillis: settings.periodMillis,
                boundaryToleranceNanos: settings.boundaryToleranceNanos, firstLabelNanos: max(reading.time.wallNanos, silent?.nextStartNanos ?? .min),
                initialTotals: .zero)
            assembler.noteSample(powerWatts: Double(microwatts) / 1_000_000)
            state = State(clock: SampleClock(first: reading.time, bootID: bootID, stepToleranceNanos: settings.clockStepToleranceNanos),
                          assembler: assembler, lastMicrowatts: microwatts)
            silent = nil
            return silentIntervals
        }
        let step = try state.clock.step(to: reading.time, meter: settings.meter)
        self.state = nil // nothing below throws; keeps `state` uniquely referenced (no array copies)
        var events = step.events
        var energy = ChannelEnergy.zero
        var quality = Quality.estimated
        if step.elapsedNanos > settings.maximumGapNanos {
            quality = .gap
            events.append(.gap(nanoseconds: step.elapsedNanos))
        } else {
            energy = Self.trapezoid(state.lastMicrowatts, microwatts, nanoseconds: step.elapsedNanos)
        }
        var closed: [AccountedInterval] = []
        if let skipped = step.skippedFrom {
            closed += state.assembler.place(from: skipped, to: step.labelStart, energy: .zero, quality: .gap, peakWatts: nil, events: [])
        }
        let peak = quality == .gap ? nil : Double(max(state.lastMicrowatts, microwatts)) / 1_000_000
        closed += state.assembler.place(from: step.labelStart, to: step.labelEnd, energy: energy, quality: quality,
                                        peakWatts: peak, events: events)
        state.assembler.noteSample(powerWatts: Double(microwatts) / 1_000_000)
        state.lastMicrowatts = microwatts
        state.clock.commit(reading.time)
        self.state = state
        return closed
    }

    /// Closes the intervals that ended while the source was silent for longer than the gap limit, as gaps.
    public mutating func tick(now: Timestamp) -> [AccountedInterval] {
        guard var state else { return SilentStart.tick(&silent, now: now, settings: settings) }
        let closed = closeSilentIntervals(&state.assembler, clock: state.clock, now: now, settings: settings)
        self.state = state
        return closed
    }

    /// The energy of a linear power ramp from `p1` to `p2` µW over `nanoseconds`, in half-femtojoules
    /// ((P₁ + P₂) × Δt), split into import and export where the ramp crosses zero.
    static func trapezoid(_ p1: Int64, _ p2: Int64, nanoseconds: Int64) -> ChannelEnergy {
        let dt = UInt128(max(0, nanoseconds))
        if p1 >= 0 && p2 >= 0 {
            return ChannelEnergy(imported: FineEnergy(units: UInt128(p1 + p2) * dt), exported: .zero)
        }
        if p1 <= 0 && p2 <= 0 {
            return ChannelEnergy(imported: .zero, exported: FineEnergy(units: UInt128(-(p1 + p2)) * dt))
        }
        // Crosses zero: each side is a triangle. Twice its area is P² × Δt / (|P₁| + |P₂|) for its peak P.
        let positive = UInt128(max(p1, p2)), negative = UInt128(-min(p1, p2))
        let sum = positive + negative
        return ChannelEnergy(imported: FineEnergy(units: multiplyDivide(positive * positive, dt, sum)),
                             exported: FineEnergy(units: multiplyDivide(negative * negative, dt, sum)))
    }
}
