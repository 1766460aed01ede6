import MeterCore

/// Imported and exported energy, each as a non-negative amount.
struct ChannelEnergy: Sendable, Hashable, Codable {
    var imported: FineEnergy
    var exported: FineEnergy

    static let zero = ChannelEnergy(imported: .zero, exported: .zero)
}

/// Places energy on the wall-clock label axis and cuts it into settlement intervals.
///
/// A source hands it segments: "this much energy was used between label times a and b". A segment that
/// crosses interval boundaries is split in proportion to time; the split is exact (cumulative floors, so the
/// parts add up to the whole). Energy is never placed before `committedNanos`, the end of what has already
/// been placed: a segment that reaches back (the wall clock stepped back, or an interval was closed for want
/// of samples) is clamped to it, which keeps every closed interval closed and conserves energy.
///
/// Invariant: `openStartNanos ≤ committedNanos < openStartNanos + periodNanos`.
struct IntervalAssembler: Sendable, Hashable, Codable {
    let meter: MeterID
    let source: SourceKind
    let periodNanos: Int64
    let boundaryToleranceNanos: Int64

    private(set) var openStartNanos: Int64
    private(set) var committedNanos: Int64
    /// Cumulative energy of the stream up to `committedNanos`.
    private(set) var totals: ChannelEnergy
    /// Cumulative energy at the start of the open interval.
    private var openingTotals: ChannelEnergy
    private var quality: Quality
    private var sampleCount: Int
    private var peakWatts: Double?
    private var events: [AccountingEvent]

    /// Starts the stream at label time `firstLabelNanos` with cumulative energy `initialTotals`. The open
    /// interval's part before the first sample has no data, so it is a gap unless the first sample is on its start.
    init(meter: MeterID, source: SourceKind, periodMillis: Int64, boundaryToleranceNanos: Int64,
         firstLabelNanos: Int64, initialTotals: ChannelEnergy) {
        self.meter = meter
        self.source = source
        self.periodNanos = periodMillis * 1_000_000
        self.boundaryToleranceNanos = boundaryToleranceNanos
        let start = Self.floorStart(firstLabelNanos, periodNanos: periodMillis * 1_000_000)
        self.openStartNanos = start
        self.committedNanos = firstLabelNanos
        self.totals = initialTotals
        self.openingTotals = initialTotals
        self.quality = firstLabelNanos - start > boundaryToleranceNanos ? .gap : .measured
        self.sampleCount = 0
        self.peakWatts = nil
        self.events = []
    }

    static func floorStart(_ t: Int64, periodNanos: Int64) -> Int64 {
        let r = t % periodNanos
        return r >= 0 ? t - r : t - r - periodNanos
    }

    /// Books `energy`, used between label times `a` and `b`, and returns the intervals it completes.
    /// - Parameters:
    ///   - quality: the quality of this segment's energy (measured for counters, estimated for integrated
    ///     power, gap for a span without data).
    ///   - peakWatts: the highest power within the segment, if known.
    ///   - events: what happened at the segment's end; attached to the last interval the segment touches.
    mutating func place(from a: Int64, to b: Int64, energy: ChannelEnergy, quality segmentQuality: Quality,
                        peakWatts: Double?, events newEvents: [AccountingEvent]) -> [AccountedInterval] {
        var closed: [AccountedInterval] = []
        let start = max(a, committedNanos)
        let end = max(b, start)
        var quality = segmentQuality
        var events = newEvents
        if start - a > boundaryToleranceNanos || end - b > boundaryToleranceNanos {
            quality = max(quality, .estimated)
            events.append(.lateEnergy)
        }
        let span = end - start
        var placed = ChannelEnergy.zero
        var boundary = openStartNanos + periodNanos
        while span > 0 && boundary <= end {
            let fraction = UInt128(boundary - start)
            let upTo = ChannelEnergy(
                imported: FineEnergy(units: multiplyDivide(energy.imported.units, fraction, UInt128(span))),
                exported: FineEnergy(units: multiplyDivide(energy.exported.units, fraction, UInt128(span))))
            totals.imported += upTo.imported - placed.imported
            totals.exported += upTo.exported - placed.exported
            placed = upTo
            // A boundary strictly inside the segment gets an interpolated cumulative value.
            let interpolated = boundary - a > boundaryToleranceNanos && b - boundary > boundaryToleranceNanos
            touch(quality: interpolated ? max(quality, .interpolated) : quality, peakWatts: peakWatts)
            if boundary == end {
                // The segment ends exactly here: what happened at its end belongs to the interval it completes.
                self.events += events
                events = []
            }
            closed.append(close(at: boundary))
            if interpolated && boundary < end { self.quality = max(self.quality, .interpolated) }
            boundary += periodNanos
        }
        totals.imported += energy.imported - placed.imported
        totals.exported += energy.exported - placed.exported
        if span == 0 || end > openStartNanos { touch(quality: quality, peakWatts: peakWatts) }
        self.events += events
        committedNanos = end
        return closed
    }

    /// Counts a sample (and its instantaneous power) into the open interval.
    mutating func noteSample(powerWatts: Double?) {
        sampleCount += 1
        if let powerWatts { peakWatts = max(peakWatts ?? powerWatts, powerWatts) }
    }

    /// Adds an event to the open interval without placing energy.
    mutating func note(_ event: AccountingEvent, quality: Quality) {
        events.append(event)
        self.quality = max(self.quality, quality)
    }

    private mutating func touch(quality: Quality, peakWatts: Double?) {
        self.quality = max(self.quality, quality)
        if let peakWatts { self.peakWatts = max(self.peakWatts ?? peakWatts, peakWatts) }
    }

    private mutating func close(at end: Int64) -> AccountedInterval {
        let importDelta = totals.imported.wholeMilliwattHours - openingTotals.imported.wholeMilliwattHours
        let exportDelta = totals.exported.wholeMilliwattHours - openingTotals.exported.wholeMilliwattHours
        let hours = Double(periodNanos) / 3.6e12
        let average = Double((importDelta - exportDelta).rawValue) / 1000 / hours
        let result = IntervalResult(
            meter: meter, source: source,
            startMillis: openStartNanos / 1_000_000, endMillis: end / 1_000_000,
            importTotal: totals.imported.wholeMilliwattHours, exportTotal: totals.exported.wholeMilliwattHours,
            importDelta: importDelta, exportDelta: exportDelta,
            averagePowerWatts: average, peakPowerWatts: peakWatts ?? max(average, 0),
            sampleCount: sampleCount, quality: quality)
        let interval = AccountedInterval(result: result, events: events)
        openStartNanos = end
        openingTotals = totals
        quality = .measured
        sampleCount = 0
        peakWatts = nil
        events = []
        return interval
    }
}

extension IntervalAssembler {
    /// The members `Codable` synthesises, for ``StateJSONWriter`` (here, where the private ones are visible).
    func write(_ key: StaticString, to w: inout StateJSONWriter) {
        w.object(key) { w in
            w.string("m", meter.rawValue)
            w.string("so", source.rawValue)
            w.integer("pn", periodNanos)
            w.integer("bt", boundaryToleranceNanos)
            w.integer("os", openStartNanos)
            w.integer("cn", committedNanos)
            totals.write("t", to: &w)
            openingTotals.write("ot", to: &w)
            w.string("q", quality.rawValue)
            w.integer("n", sampleCount)
            if let peakWatts { w.double("pk", peakWatts) }
            w.array("ev") { w in
                for event in events { event.write(to: &w) }
            }
        }
    }
}

