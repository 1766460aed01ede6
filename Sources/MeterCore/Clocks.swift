#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the gateway reads time from. Injected so tests can step the wall clock and freeze the monotonic one.
public protocol TimeSource: Sendable {
    func now() -> Timestamp
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
