/// Counts S0 pulses from edge events, with software debounce. Pure: no I/O, time comes with the events.
///
/// libgpiod v1 has no debounce, so it is done here on the kernel's event timestamps (never the time an event
/// was read). A pulse is a leading edge followed by a trailing edge at least `minimumPulseWidth` later (S0
/// pulses are at least 30 ms); anything shorter is contact bounce or noise and is dropped. A leading edge less
/// than `minimumGap` after a counted pulse ended is a dropout within that pulse (or trailing-edge bounce), not a
/// new pulse. A pulse is counted once, when its trailing edge confirms it.
///
/// Edges are as the line reports them after libgpiod's active-low inversion: `rising` is the start of the ON pulse.
public struct PulseCounter: Sendable, Hashable, Codable {
    public enum Edge: String, Sendable, Hashable, Codable {
        case rising, falling
    }

    /// One edge from the kernel: CLOCK_MONOTONIC nanoseconds (libgpiod v1 `struct gpiod_line_event`).
    public struct Event: Sendable, Hashable, Codable {
        public var timestampNanos: UInt64
        public var edge: Edge

        public init(timestampNanos: UInt64, edge: Edge) {
            self.timestampNanos = timestampNanos
            self.edge = edge
        }
    }

    public struct Configuration: Sendable, Hashable, Codable {
        /// The shortest ON time that counts as a pulse. Default 20 ms: under the 30 ms S0 minimum, far above bounce.
        public var minimumPulseWidthNanos: UInt64
        /// The shortest OFF time between two pulses. Default 10 ms.
        public var minimumGapNanos: UInt64

        public init(minimumPulseWidthNanos: UInt64 = 20_000_000, minimumGapNanos: UInt64 = 10_000_000) {
            self.minimumPulseWidthNanos = minimumPulseWidthNanos
            self.minimumGapNanos = minimumGapNanos
        }

        /// No debounce at all: every leading/trailing pair is a pulse.
        public static let none = Configuration(minimumPulseWidthNanos: 0, minimumGapNanos: 0)
    }

    private enum Phase: Sendable, Hashable, Codable {
        /// OFF; the last counted pulse ended then, if any.
        case off(lastPulseEnd: UInt64?)
        /// ON since then, not counted yet.
        case on(since: UInt64)
        /// ON again shortly after a counted pulse: part of that pulse.
        case continuing
    }

    public let configuration: Configuration
    /// Pulses counted since the counter was created or restored.
    public private(set) var count: UInt64
    /// Edges dropped as bounce, noise or out of order.
    public private(set) var rejectedEdges: UInt64
    /// Leading-edge times of the last two counted pulses, for the power estimate.
    public private(set) var lastPulseStart: UInt64?
    public private(set) var previousPulseStart: UInt64?
    private var phase: Phase
    private var lastEventNanos: UInt64?

    /// - Parameter count: the count to continue from (the persisted one after a restart).
    public init(configuration: Configuration = Configuration(), count: UInt64 = 0) {
        self.configuration = configuration
        self.count = count
        self.rejectedEdges = 0
        self.phase = .off(lastPulseEnd: nil)
    }

    /// Feeds one edge; returns true when it completed a pulse (the count went up by one).
    @discardableResult
    public mutating func handle(_ event: Event) -> Bool {
        if let last = lastEventNanos, event.timestampNanos < last {
            rejectedEdges += 1
            return false
        }
        lastEventNanos = event.timestampNanos
        switch (phase, event.edge) {
        case (.off(let lastEnd), .rising):
            if let lastEnd, event.timestampNanos - lastEnd < configuration.minimumGapNanos {
                phase = .continuing
                rejectedEdges += 1
            } else {
                phase = .on(since: event.timestampNanos)
            }
        case (.on(let since), .falling):
            if event.timestampNanos - since >= configuration.minimumPulseWidthNanos {
                count += 1
                previousPulseStart = lastPulseStart
                lastPulseStart = since
                phase = .off(lastPulseEnd: event.timestampNanos)
                return true
            }
            // Too short: bounce or a spike. Forget it.
            rejectedEdges += 2
            phase = .off(lastPulseEnd: nil)
        case (.continuing, .falling):
            phase = .off(lastPulseEnd: event.timestampNanos)
        case (.off, .falling), (.on, .rising), (.continuing, .rising):
            // An edge in the state it leads to: a missed edge (kernel queue overflow) or a duplicate.
            rejectedEdges += 1
        }
        return false
    }

    /// Power from the time between the last two pulses: P [W] = 3 600 000 / (imp/kWh × Δt [s]).
    public func powerWatts(impulsesPerKilowattHour: UInt64) -> Double? {
        guard let last = lastPulseStart, let previous = previousPulseStart, last > previous, impulsesPerKilowattHour > 0 else { return nil }
        return 3_600_000 / (Double(impulsesPerKilowattHour) * Double(last - previous) / 1e9)
    }
}
