import MeterCore

/// A stream that has had no reading since it was configured: a meter, rail or input that never answered. Each of
/// its intervals that ends is closed as a `gap` with no samples, so settlement sees the outage from the start
/// instead of no stream at all. No counter value is known yet, so such records carry totals of 0; the first
/// reading then sets the stream's baseline in the interval it falls in.
struct SilentStart: Sendable, Hashable {
    /// The start of the next interval to close (wall-clock nanoseconds, on the interval grid).
    private(set) var nextStartNanos: Int64

    /// Starts at the interval that holds `nowNanos` (that interval is partly before the gateway started: a gap too).
    init(nowNanos: Int64, periodNanos: Int64) {
        nextStartNanos = IntervalAssembler.floorStart(nowNanos, periodNanos: periodNanos)
    }

    init(nextStartNanos: Int64) { self.nextStartNanos = nextStartNanos }

    /// The gap intervals that ended by `wallNanos` (none if the wall clock went back).
    mutating func close(upTo wallNanos: Int64, settings: SourceSettings) -> [AccountedInterval] {
        let period = settings.periodMillis * 1_000_000
        var closed: [AccountedInterval] = []
        while nextStartNanos + period <= wallNanos {
            let result = IntervalResult(meter: settings.meter, source: settings.source, startMillis: nextStartNanos / 1_000_000,
                                        endMillis: (nextStartNanos + period) / 1_000_000, importTotal: .zero, exportTotal: .zero,
                                        importDelta: .zero, exportDelta: .zero, averagePowerWatts: 0, peakPowerWatts: 0, sampleCount: 0,
                                        quality: .gap)
            closed.append(AccountedInterval(result: result, events: [.gap(nanoseconds: period)]))
            nextStartNanos += period
        }
        return closed
    }

    /// Closes what ended by `now`, starting the count at the first call.
    static func tick(_ silent: inout SilentStart?, now: Timestamp, settings: SourceSettings) -> [AccountedInterval] {
        guard var current = silent else {
            silent = SilentStart(nowNanos: now.wallNanos, periodNanos: settings.periodMillis * 1_000_000)
            return []
        }
        let closed = current.close(upTo: now.wallNanos, settings: settings)
        silent = current
        return closed
    }
}
