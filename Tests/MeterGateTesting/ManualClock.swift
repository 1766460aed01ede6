import Dispatch
import MeterCore
import Modbus
import Synchronization

/// A clock that stands still until the test moves it. As a ``PollClock``, the poll loop's waits block until the
/// test has advanced past their deadline (or the loop is cancelled); ``nextSleep(after:timeout:)`` says when the
/// loop waits, so a test can step it deadline by deadline, and every count it checks is exact. As a
/// ``MonotonicClock``, it is what the publisher's pauses are measured by.
public final class ManualClock: PollClock, Sendable {
    /// The state the loop and the test share: how far the clock has moved, and the loop's waits so far.
    private struct State {
        var elapsed: Duration = .zero
        var sleeps = 0
        var deadline: ContinuousClock.Instant?
    }

    /// Instants are real ones (a `ContinuousClock.Instant` cannot be made otherwise), starting at the clock's making.
    public let start = ContinuousClock.now
    private let state = Mutex(State())

    public init() {}

    public var now: ContinuousClock.Instant { start + state.withLock { $0.elapsed } }

    /// How far the clock has moved since it was made.
    public var elapsed: Duration { state.withLock { $0.elapsed } }

    public func wait(until deadline: ContinuousClock.Instant, wake: DispatchSemaphore) {
        guard deadline > now else { return }
        state.withLock {
            $0.sleeps += 1
            $0.deadline = deadline
        }
        defer { state.withLock { $0.deadline = nil } }
        // Checked every millisecond of real time: the test's `advance` needs no signal of its own.
        while now < deadline {
            if wake.wait(timeout: .now() + .milliseconds(1)) == .success { return }
        }
    }

    /// Moves the clock on by `duration`.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "a clock does not go back")
        state.withLock { $0.elapsed += duration }
    }

    /// Moves the clock on to `instant` (not back).
    public func advance(to instant: ContinuousClock.Instant) {
        state.withLock { $0.elapsed = max($0.elapsed, instant - start) }
    }

    /// Waits (in real time, up to `timeout`) until the loop has begun a wait after its `sleeps`-th one, and returns
    /// its number and deadline. A loop that never waits again fails the test with `ManualClock.NoSleep`.
    public func nextSleep(after sleeps: Int, timeout: Duration = .seconds(10)) async throws -> (number: Int, deadline: ContinuousClock.Instant) {
        let giveUp = ContinuousClock.now + timeout
        while ContinuousClock.now < giveUp {
            let found = state.withLock { s -> (Int, ContinuousClock.Instant)? in
                guard s.sleeps > sleeps, let deadline = s.deadline else { return nil }
                return (s.sleeps, deadline)
            }
            if let found { return found }
            try await Task.sleep(for: .milliseconds(1))
        }
        throw NoSleep(after: sleeps, waited: timeout)
    }

    /// Steps the clock from one wait's deadline to the next until it has moved `span` from its start; returns
    /// the number of waits stepped through.
    @discardableResult
    public func run(for span: Duration, timeout: Duration = .seconds(30)) async throws -> Int {
        var seen = state.withLock { $0.sleeps - ($0.deadline == nil ? 0 : 1) }
        var steps = 0
        while elapsed < span {
            let (number, deadline) = try await nextSleep(after: seen, timeout: timeout)
            seen = number
            advance(to: min(deadline, start + span))
            steps += 1
        }
        return steps
    }

    public struct NoSleep: Error, CustomStringConvertible {
        public let after: Int
        public let waited: Duration
        public var description: String { "the poll loop began no wait after its wait \(after) within \(waited)" }
    }
}
