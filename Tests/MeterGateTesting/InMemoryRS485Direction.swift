import Modbus
import Synchronization

/// An RS-485 direction control that records every switch in memory: what a test sees of a GPIO line.
public final class InMemoryRS485Direction: RS485DirectionControl {
    private let state = Mutex<(events: [Bool], failure: RS485DirectionError?)>(([], nil))
    public let description: String

    public init(description: String = "in-memory direction line") {
        self.description = description
    }

    public func setTransmitting(_ transmitting: Bool) -> RS485DirectionError? {
        state.withLock { state in
            state.events.append(transmitting)
            return state.failure
        }
    }

    /// Every switch so far, oldest first (`true`: transmit).
    public var events: [Bool] { state.withLock { $0.events } }

    /// Makes every later switch fail with `failure` (nil: succeed again).
    public func fail(with failure: RS485DirectionError?) {
        state.withLock { $0.failure = failure }
    }
}
