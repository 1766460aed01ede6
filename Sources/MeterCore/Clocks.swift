#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the gateway reads time from. Injected so tests can step the wall clock and freeze the monotonic one.
public protocol TimeSource: Sendable {
    func now() -> Timestamp
}

/// The monotonic clock a component schedules by (when a meter is due, how long a refusal pauses delivery):
/// ``SystemMonotonicClock``, or one a test steps instead of waiting (MeterGateTesting's `ManualClock`).
public protocol MonotonicClock: Sendable {
    var now: ContinuousClock.Instant { get }
}

/// The machine's monotonic clock (`ContinuousClock`, CLOCK_MONOTONIC on Linux).
public struct SystemMonotonicClock: MonotonicClock {
    public init() {}
    public var now: ContinuousClock.Instant { .now }
}

/// The system clocks: CLOCK_REALTIME and CLOCK_MONOTONIC.
public struct SystemTimeSource: TimeSource {
    public init() {}

    /// Reads both clocks. The corresponding C function is `clock_gettime`.
    public func now() -> Timestamp {
        var wall = timespec()
        var mono = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        clock_gettime(CLOCK_MONOTONIC, &mono)
        return Timestamp(
            wallNanos: Int64(wall.tv_sec) * 1_000_000_000 + Int64(wall.tv_nsec),
            monotonicNanos: UInt64(mono.tv_sec) * 1_000_000_000 + UInt64(mono.tv_nsec))
    }
}

/// UTC calendar times as text, without Foundation's date formatters: those load ICU's calendar, locale and
/// time-zone data (about 4 MiB of the gateway's resident memory) for a fixed, locale-free format.
public enum UTCText {
    /// `2026-11-21T13:45:07Z` (ISO 8601, whole seconds), or with `compact` `20261121T134507Z`.
    /// The corresponding C function is `gmtime_r`.
    public static func iso8601(epochSeconds: Int64, compact: Bool = false) -> String {
        var t = time_t(epochSeconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let date = [pad(parts.tm_year + 1900, 4), pad(parts.tm_mon + 1, 2), pad(parts.tm_mday, 2)]
        let time = [pad(parts.tm_hour, 2), pad(parts.tm_min, 2), pad(parts.tm_sec, 2)]
        return date.joined(separator: compact ? "" : "-") + "T" + time.joined(separator: compact ? "" : ":") + "Z"
    }
}
