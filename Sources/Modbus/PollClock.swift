import Dispatch
import MeterCore

/// The time a bus poller keeps: what time it is, and a wait that blocks the poll loop's own thread (never a
/// cooperative-pool thread) until a deadline. ``SystemPollClock`` is the machine's monotonic clock; a test steps
/// a manual one (MeterGateTesting's `ManualClock`) so the schedule, back-off and batching are checked
/// without waiting in real time.
public protocol PollClock: MonotonicClock {
    /// Blocks the calling thread until `deadline`, or until `wake` is signalled (the loop is being cancelled);
    /// returns at once for a deadline already passed.
    func wait(until deadline: ContinuousClock.Instant, wake: DispatchSemaphore)
}

/// The machine's monotonic clock; waits are `DispatchSemaphore.wait(timeout:)` on the poller's queue.
public struct SystemPollClock: PollClock {
    public init() {}

    public var now: ContinuousClock.Instant { .now }

    public func wait(until deadline: ContinuousClock.Instant, wake: DispatchSemaphore) {
        let left = deadline - .now
        guard left > .zero else { return }
        let (seconds, attoseconds) = left.components
        _ = wake.wait(timeout: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)))
    }
}
