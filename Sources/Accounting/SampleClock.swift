import MeterCore

/// How a sample relates in time to the one before it.
struct TimeStep: Sendable, Hashable {
    /// Time elapsed between the samples: monotonic when both were taken in one boot, otherwise the wall clock's.
    var elapsedNanos: Int64
    /// Whether `elapsedNanos` comes from the monotonic clock of one boot.
    var monotonic: Bool
    /// Where the segment between the samples lies on the wall-clock label axis.
    var labelStart: Int64
    var labelEnd: Int64
    /// A span before `labelStart` that the wall clock skipped (stepped forward): no data, no energy.
    var skippedFrom: Int64?
    var events: [AccountingEvent]
}

/// Follows a source's sample times on both clocks and notices wall-clock steps and restarts.
///
/// Energy is measured on the monotonic clock, which never jumps; the wall clock only labels. A step is a
/// change of (wall − monotonic) larger than the tolerance between two samples. A step forward leaves the
/// skipped wall-clock span empty (an explicit gap), a step back books the energy into the interval that is
/// still open (the assembler's clamp): in both cases the energy itself is what the monotonic clock says.
struct SampleClock: Sendable, Hashable, Codable {
    let stepToleranceNanos: Int64
    private(set) var last: Timestamp
    /// The boot the last sample was taken in, if known (`/proc/sys/kernel/random/boot_id`).
    private(set) var bootID: String?
    /// Set after a restore whose boot is not known to be the same: the next step may not use the monotonic clock.
    private var resumed: Bool

    init(first: Timestamp, bootID: String?, stepToleranceNanos: Int64) {
        self.stepToleranceNanos = stepToleranceNanos
        self.last = first
        self.bootID = bootID
        self.resumed = false
    }

    /// Prepares for the first sample after a restart in boot `currentBootID`.
    mutating func resume(bootID currentBootID: String?) {
        resumed = !(currentBootID != nil && currentBootID == bootID)
        bootID = currentBootID
    }

    /// Measures the step to `time` without recording it; `commit` records it.
    func step(to time: Timestamp, meter: MeterID) throws(AccountingError) -> TimeStep {
        let wallDelta = time.wallNanos - last.wallNanos
        if resumed {
            // Another boot, or unknown: the monotonic clocks may not be comparable. Trust them only if they agree
            // with the wall clock; otherwise measure the downtime on the wall clock.
            let monoDelta = time.monotonicNanos >= last.monotonicNanos ? Int64(time.monotonicNanos - last.monotonicNanos) : nil
            if bootID == nil, let monoDelta, abs(wallDelta - monoDelta) <= stepToleranceNanos {
                return TimeStep(elapsedNanos: monoDelta, monotonic: true, labelStart: last.wallNanos, labelEnd: time.wallNanos,
                                skippedFrom: nil, events: [.restart(downtimeNanoseconds: wallDelta)])
            }
            return TimeStep(elapsedNanos: max(0, wallDelta), monotonic: false, labelStart: last.wallNanos, labelEnd: time.wallNanos,
                            skippedFrom: nil, events: [.restart(downtimeNanoseconds: wallDelta)])
        }
        guard time.monotonicNanos >= last.monotonicNanos else {
            throw .monotonicTimeWentBackwards(meter: meter, previousNanos: last.monotonicNanos, newNanos: time.monotonicNanos)
        }
        let monoDelta = Int64(time.monotonicNanos - last.monotonicNanos)
        let skew = wallDelta - monoDelta
        if skew > stepToleranceNanos {
            // Stepped forward: the energy belongs to the last `monoDelta` before the new wall time.
            let start = time.wallNanos - monoDelta
            return TimeStep(elapsedNanos: monoDelta, monotonic: true, labelStart: start, labelEnd: time.wallNanos,
                            skippedFrom: last.wallNanos, events: [.clockStep(nanoseconds: skew)])
        }
        let events: [AccountingEvent] = skew < -stepToleranceNanos ? [.clockStep(nanoseconds: skew)] : []
        return TimeStep(elapsedNanos: monoDelta, monotonic: true, labelStart: last.wallNanos, labelEnd: time.wallNanos,
                        skippedFrom: nil, events: events)
    }

    mutating func commit(_ time: Timestamp) {
        last = time
        resumed = false
    }
}

/// How far the wall clock stepped between two readings of both clocks, relative to the monotonic clock
/// (positive: forward), when that is more than `toleranceNanos`; nil otherwise, and when the monotonic
/// clock went back (another boot: nothing to compare).
public func wallClockStep(from a: Timestamp, to b: Timestamp, toleranceNanos: Int64) -> Int64? {
    guard b.monotonicNanos >= a.monotonicNanos else { return nil }
    let skew = (b.wallNanos - a.wallNanos) - Int64(b.monotonicNanos - a.monotonicNanos)
    return abs(skew) > toleranceNanos ? skew : nil
}

extension SampleClock {
    /// The members `Codable` synthesises, for ``StateJSONWriter`` (here, where the private ones are visible).
    func write(_ key: StaticString, to w: inout StateJSONWriter) {
        w.object(key) { w in
            w.integer("st", stepToleranceNanos)
            last.write("l", to: &w)
            if let bootID { w.string("b", bootID) }
            w.bool("r", resumed)
        }
    }
}

