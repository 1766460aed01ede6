internal import CGPIOD
#if canImport(Glibc)
import Glibc
#endif

/// One GPIO line requested for edge events through libgpiod v1 (Debian 12: 1.6).
///
/// The line is requested for both edges so the debounce can measure pulse width; with `activeLow` libgpiod
/// inverts the line, so the start of an S0 ON pulse (which pulls the input low) reads as a rising edge.
/// Timestamps are the kernel's (CLOCK_MONOTONIC on Linux ≥ 5.7), taken when the edge happened, not when it was read.
///
/// `@unchecked Sendable` is safe: the chip and line pointers are set once in `init` and released in `deinit`;
/// `waitForEdges` is the only method that touches them afterwards and its documentation requires one caller at a
/// time (the `PulseInputReader` thread). libgpiod v1 handles are not thread-safe, so this type never shares them.
public final class GPIOEdgeReader: @unchecked Sendable {
    public enum Bias: String, Sendable, Hashable, CaseIterable {
        /// Leave the line's bias as the device tree sets it.
        case asIs = "as-is"
        /// Enable the SoC's pull-up: S0− to the GPIO, S0+ to 3.3 V or the pull-up alone.
        case pullUp = "pull-up"
        case pullDown = "pull-down"
    }

    private let requested: RequestedGPIOLine
    private var line: OpaquePointer { requested.line }
    public var chipName: String { requested.chipName }
    public var offset: Int { requested.offset }

    /// Opens `chip` (name, path, label or number) and requests line `offset` for both edges.
    /// The corresponding C functions are `gpiod_chip_open_lookup`, `gpiod_chip_get_line` and
    /// `gpiod_line_request_both_edges_events_flags`.
    public init(chip chipName: String, offset: Int, consumer: String = "metergate", activeLow: Bool = true,
                bias: Bias = .asIs) throws(GPIOError) {
        var flags: Int32 = 0
        if activeLow { flags |= Int32(GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW) }
        switch bias {
        case .asIs: break
        case .pullUp: flags |= Int32(GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_UP)
        case .pullDown: flags |= Int32(GPIOD_LINE_REQUEST_FLAG_BIAS_PULL_DOWN)
        }
        requested = try RequestedGPIOLine(chip: chipName, offset: offset, function: "gpiod_line_request_both_edges_events_flags") {
            gpiod_line_request_both_edges_events_flags($0, consumer, flags)
        }
    }

    /// Waits up to `timeoutNanos` for edges and returns those that arrived (empty on timeout). Blocks: call it
    /// from one dedicated thread only.
    /// The corresponding C functions are `gpiod_line_event_wait` and `gpiod_line_event_read_multiple`.
    public func waitForEdges(timeoutNanos: Int64) throws(GPIOError) -> [PulseCounter.Event] {
        var timeout = timespec(tv_sec: Int(timeoutNanos / 1_000_000_000), tv_nsec: Int(timeoutNanos % 1_000_000_000))
        let ready = gpiod_line_event_wait(line, &timeout)
        if ready == 0 { return [] }
        guard ready > 0 else {
            let code = CGPIOD_errno()
            if code == EINTR { return [] }
            throw GPIOError(function: "gpiod_line_event_wait", code: code, context: "line \(offset) of chip '\(chipName)'")
        }
        var buffer = [gpiod_line_event](repeating: gpiod_line_event(), count: 16)
        let count = buffer.withUnsafeMutableBufferPointer { gpiod_line_event_read_multiple(line, $0.baseAddress, UInt32($0.count)) }
        guard count >= 0 else {
            throw GPIOError(function: "gpiod_line_event_read_multiple", code: CGPIOD_errno(), context: "line \(offset) of chip '\(chipName)'")
        }
        return buffer.prefix(Int(count)).map { event in
            PulseCounter.Event(timestampNanos: UInt64(event.ts.tv_sec) * 1_000_000_000 + UInt64(event.ts.tv_nsec),
                               edge: event.event_type == Int32(GPIOD_LINE_EVENT_RISING_EDGE) ? .rising : .falling)
        }
    }
}
