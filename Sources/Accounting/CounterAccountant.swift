import MeterCore

/// Turns successive readings of a cumulative energy counter (a meter's kWh register, NVML's mJ counter, RAPL's
/// µJ counter, an S0 pulse count) into settlement intervals.
///
/// A pure state machine: no I/O, no clock of its own. Feed it readings in order with `add(_:)`, call
/// `tick(now:)` when a poll fails so that silent intervals still close (as gaps), and persist `snapshot()`
/// together with the intervals it returned.
///
/// - Deltas come from successive counter values; a boundary between two polls gets the value interpolated
///   between them (the split is proportional to time) and both intervals are flagged `interpolated`.
/// - A decrease is a rollover when the register's range and the rated power make the wrap plausible, and a
///   reset otherwise (meter replaced or cleared, driver reloaded): no energy is ever negative.
/// - An increase beyond rated power × elapsed time is flagged and not paid.
/// - The stream's cumulative totals start at the first reading and only ever grow by paid energy.
public struct CounterAccountant: Sendable {
    /// What to pay after a reset.
    public enum ResetPolicy: String, Sendable, Hashable, Codable {
        /// Pay nothing for the step; the new value is the new baseline (a replaced meter starts anywhere).
        case rebase
        /// The counter restarted from zero (NVML after a driver reload, hwmon after a reboot): pay the new value,
        /// if it is plausible for the elapsed time.
        case countFromZero
    }

    public struct Configuration: Sendable, Hashable, Codable {
        public var settings: SourceSettings
        /// Energy per count.
        public var scale: CounterScale
        /// Where the counter wraps.
        public var range: CounterRange
        /// Whether readings carry an export counter as well as the import counter.
        public var hasExportCounter: Bool
        /// The most the source can draw (W); increases beyond it are implausible. Nil: no limit.
        public var ratedPowerWatts: Double?
        public var afterReset: ResetPolicy

        public init(settings: SourceSettings, scale: CounterScale, range: CounterRange = .bits(64),
                    hasExportCounter: Bool = false, ratedPowerWatts: Double?, afterReset: ResetPolicy = .rebase) {
            self.settings = settings
            self.scale = scale
            self.range = range
            self.hasExportCounter = hasExportCounter
            self.ratedPowerWatts = ratedPowerWatts
            self.afterReset = afterReset
        }
    }

    /// One poll of the counter(s).
    public struct Reading: Sendable, Hashable {
        public var time: Timestamp
        public var importCount: UInt64
        public var exportCount: UInt64?
        /// Instantaneous power the source reported with the counter, if any (for the peak).
        public var powerWatts: Double?

        public init(time: Timestamp, importCount: UInt64, exportCount: UInt64? = nil, powerWatts: Double? = nil) {
            self.time = time
            self.importCount = importCount
            self.exportCount = exportCount
            self.powerWatts = powerWatts
        }
    }

    struct Channel: Sendable, Hashable, Codable {
        var lastRaw: UInt64
        /// Counts paid since the stream began, including the first reading.
        var paid: BigCount
    }

    struct State: Sendable, Hashable, Codable {
        var clock: SampleClock
        var assembler: IntervalAssembler
        var importChannel: Channel
        var exportChannel: Channel?
    }

    /// Everything needed to continue after a restart: the last counter values and the open interval.
    public struct Snapshot: Sendable, Hashable, Codable {
        public let meter: MeterID
        let periodMillis: Int64
        let scale: CounterScale
        let hasExportCounter: Bool
        let state: State?
        /// Before the first reading: the next interval to close as a gap (``SilentStart``); nil in snapshots made before.
        var awaiting: Int64? = nil
    }

    public let configuration: Configuration
    /// Counts per nanosecond at rated power (computed once: converting `UInt128` to `Double` is not cheap).
    private let ratedCountsPerNanosecond: Double?
    private let bootID: String?
    private var state: State?
    /// While no reading has come: the intervals to close as gaps.
    private var silent: SilentStart?

    /// A fresh stream. `bootID` is this boot's `/proc/sys/kernel/random/boot_id`, if known.
    public init(configuration: Configuration, bootID: String? = nil) {
        self.configuration = configuration
        self.ratedCountsPerNanosecond = Self.countsPerNanosecond(configuration)
        self.bootID = bootID
        self.state = nil
    }

    private static func countsPerNanosecond(_ configuration: Configuration) -> Double? {
        configuration.ratedPowerWatts.map {
            $0 * Double(FineEnergy.unitsPerWattNanosecond) * Double(configuration.scale.denominator) / Double(configuration.scale.numerator)
        }
    }

    /// Continues a stream from a snapshot taken before a restart; the downtime becomes explicit gap intervals.
    public init(configuration: Configuration, restoring snapshot: Snapshot, bootID: String? = nil) throws(AccountingError) {
        let meter = configuration.settings.meter
        guard snapshot.meter == meter else { throw .snapshotMismatch(meter: meter, reason: "it was saved for meter \(snapshot.meter)") }
        guard snapshot.periodMillis == configuration.settings.periodMillis else {
            throw .snapshotMismatch(meter: meter, reason: "interval \(snapshot.periodMillis) ms, configured \(configuration.settings.periodMillis) ms")
        }
        guard snapshot.scale == configuration.scale else {
            throw .snapshotMismatch(meter: meter, reason: "counter scale \(snapshot.scale), configured \(configuration.scale)")
        }
        guard snapshot.hasExportCounter == configuration.hasExportCounter else {
            throw .snapshotMismatch(meter: meter, reason: "export counter \(snapshot.hasExportCounter ? "present" : "absent") in the saved state")
        }
        self.configuration = configuration
        self.ratedCountsPerNanosecond = Self.countsPerNanosecond(configuration)
        self.bootID = bootID
        self.state = snapshot.state
        self.state?.clock.resume(bootID: bootID)
        if snapshot.state == nil { self.silent = snapshot.awaiting.map(SilentStart.init(nextStartNanos:)) }
    }

    public func snapshot() -> Snapshot {
        Snapshot(meter: configuration.settings.meter, periodMillis: configuration.settings.periodMillis,
                 scale: configuration.scale, hasExportCounter: configuration.hasExportCounter, state: state,
                 awaiting: state == nil ? silent?.nextStartNanos : nil)
    }

    /// Cumulative import and export energy paid so far, exact.
    public var totals: (imported: FineEnergy, exported: FineEnergy)? {
        state.map { ($0.assembler.totals.imported, $0.assembler.totals.exported) }
    }

    /// The last counter values read (import, export), in counts; nil before the first reading.
    public var lastCounts: (importCount: UInt64, exportCount: UInt64?)? {
        state.map { ($0.importChannel.lastRaw, $0.exportChannel?.lastRaw) }
    }

    /// Books one reading; returns the intervals it completes. Throws (changing nothing) on out-of-order or
    /// malformed input.
    ///
    /// `rebasing`: the reading is the first of another meter (a replacement, known by its identity): its counters
    /// are the new baseline, nothing is paid for the step between the two meters, and the interval is flagged.
    public mutating func add(_ reading: Reading, rebasing: Bool = false) throws(AccountingError) -> [AccountedInterval] {
        let settings = configuration.settings
        guard (reading.exportCount != nil) == configuration.hasExportCounter else {
            throw .exportChannelMismatch(meter: settings.meter, configured: configuration.hasExportCounter)
        }
        if let p = reading.powerWatts, !p.isFinite { throw .powerNotFinite(meter: settings.meter, value: p) }
        guard var state else {
            let silentIntervals = silent?.close(upTo: reading.time.wallNanos, settings: settings) ?? []
            // Never placed before what the silent intervals closed (a wall clock that went back).
            start(reading, labelNotBefore: silent?.nextStartNanos)
            silent = nil
            return silentIntervals
        }
        let step = try state.clock.step(to: reading.time, meter: settings.meter)
        // Nothing below throws. Dropping the stored copy keeps `state` uniquely referenced, so its arrays are
        // mutated in place rather than copied on every sample.
        self.state = nil
        let limit = maximumIncrease(elapsedNanos: step.elapsedNanos)
        var events = step.events
        var quality = Quality.measured
        // The counter difference is exact over the monotonic time, but the labels that place it rest on a wall clock
        // that just jumped: the interval is flagged, whether the sample or the silence tick reached it first.
        if events.contains(where: \.isClockStep) { quality = .estimated }
        if rebasing {
            events.append(.meterReplaced(fromCounts: state.importChannel.lastRaw, toCounts: reading.importCount))
            quality = .gap
        }
        let imported = advance(&state.importChannel, to: reading.importCount, limit: limit, rebasing: rebasing, events: &events, quality: &quality)
        var exported = FineEnergy.zero
        if var channel = state.exportChannel, let count = reading.exportCount {
            exported = advance(&channel, to: count, limit: limit, rebasing: rebasing, events: &events, quality: &quality)
            state.exportChannel = channel
        }
        if step.elapsedNanos > settings.maximumGapNanos {
            quality = .gap
            events.append(.gap(nanoseconds: step.elapsedNanos))
        }
        var closed: [AccountedInterval] = []
        if let skipped = step.skippedFrom {
            closed += state.assembler.place(from: skipped, to: step.labelStart, energy: .zero, quality: .gap, peakWatts: nil, events: [])
        }
        let meanPower: Double? = step.elapsedNanos > 0
            ? Double((imported.units > exported.units ? imported.units - exported.units : 0) / FineEnergy.unitsPerWattNanosecond)
                / Double(step.elapsedNanos)
            : nil
        closed += state.assembler.place(from: step.labelStart, to: step.labelEnd,
                                        energy: ChannelEnergy(imported: imported, exported: exported),
                                        quality: quality, peakWatts: reading.powerWatts ?? meanPower, events: events)
        state.assembler.noteSample(powerWatts: reading.powerWatts)
        state.clock.commit(reading.time)
        self.state = state
        return closed
    }

    /// Closes intervals that ended while the source gave no readings for longer than the gap limit; they are
    /// emitted as gaps. Energy a counter later shows for that time is booked into the open interval.
    /// A stream that has had no reading yet closes each interval that ended as a gap with no samples (``SilentStart``).
    public mutating func tick(now: Timestamp) -> [AccountedInterval] {
        guard var state else { return SilentStart.tick(&silent, now: now, settings: configuration.settings) }
        let closed = closeSilentIntervals(&state.assembler, clock: state.clock, now: now, settings: configuration.settings)
        self.state = state
        return closed
    }

    private mutating func start(_ reading: Reading, labelNotBefore: Int64? = nil) {
        let settings = configuration.settings
        let importChannel = Channel(lastRaw: reading.importCount, paid: BigCount(UInt128(reading.importCount)))
        let exportChannel = reading.exportCount.map { Channel(lastRaw: $0, paid: BigCount(UInt128($0))) }
        var assembler = IntervalAssembler(
            meter: settings.meter, source: settings.source, periodMillis: settings.periodMillis,
            boundaryToleranceNanos: settings.boundaryToleranceNanos, firstLabelNanos: max(reading.time.wallNanos, labelNotBefore ?? .min),
            initialTotals: ChannelEnergy(imported: configuration.scale.energy(ofCount: importChannel.paid.value),
                                         exported: exportChannel.map { configuration.scale.energy(ofCount: $0.paid.value) } ?? .zero))
        assembler.noteSample(powerWatts: reading.powerWatts)
        state = State(clock: SampleClock(first: reading.time, bootID: bootID, stepToleranceNanos: settings.clockStepToleranceNanos),
                      assembler: assembler, importChannel: importChannel, exportChannel: exportChannel)
    }

    /// The largest plausible increase in counts over `elapsedNanos`, rounded up, plus one count for quantisation.
    /// A plausibility bound, so floating point is precise enough here; energy itself never touches it.
    private func maximumIncrease(elapsedNanos: Int64) -> UInt64 {
        guard let countsPerNanosecond = ratedCountsPerNanosecond else { return .max }
        let counts = countsPerNanosecond * Double(max(0, elapsedNanos))
        guard counts.isFinite, counts < 1.8e19 else { return .max }
        return UInt64(counts.rounded(.up)) + 1
    }

    /// Classifies the counter's step and returns the energy to pay for it.
    private func advance(_ channel: inout Channel, to raw: UInt64, limit: UInt64, rebasing: Bool,
                         events: inout [AccountingEvent], quality: inout Quality) -> FineEnergy {
        let scale = configuration.scale
        guard !rebasing else {
            channel.lastRaw = raw
            return .zero
        }
        let before = scale.energy(ofCount: channel.paid.value)
        switch counterStep(from: channel.lastRaw, to: raw, range: configuration.range, maximumIncrease: limit) {
        case .increase(let counts):
            if counts > limit {
                events.append(.implausibleIncrease(counts: counts, limit: limit))
                quality = .gap
            } else {
                channel.paid.value += UInt128(counts)
            }
        case .rollover(let counts):
            channel.paid.value += UInt128(counts)
            events.append(.rollover(counts: counts))
        case .reset:
            let paid: UInt64 = configuration.afterReset == .countFromZero && raw <= limit ? raw : 0
            channel.paid.value += UInt128(paid)
            events.append(.reset(from: channel.lastRaw, to: raw, paidCounts: paid))
            quality = .gap
        }
        channel.lastRaw = raw
        return scale.energy(ofCount: channel.paid.value) - before
    }
}

/// Closes the intervals that ended during a silence longer than the gap limit, as gaps.
func closeSilentIntervals(_ assembler: inout IntervalAssembler, clock: SampleClock, now: Timestamp,
                          settings: SourceSettings) -> [AccountedInterval] {
    guard let step = try? clock.step(to: now, meter: settings.meter),
          step.elapsedNanos > settings.maximumGapNanos,
          now.wallNanos >= assembler.openStartNanos + assembler.periodNanos
    else { return [] }
    return assembler.place(from: assembler.committedNanos, to: now.wallNanos, energy: .zero, quality: .gap,
                           peakWatts: nil, events: [.gap(nanoseconds: step.elapsedNanos)])
}
