import MeterCore

/// How a counter moved between two reads.
public enum CounterStep: Sendable, Hashable {
    /// Normal increase (or no change) by this many counter units.
    case increase(UInt64)
    /// The counter wrapped at its register width; the increase includes the wrap.
    case rollover(UInt64)
    /// The counter went backwards without wrapping: meter replaced or cleared. No energy is paid for the step.
    case reset
}

/// Tells a rollover from a reset: a wrap is only plausible when the old value was near the top of the
/// register and the new one near the bottom, and the implied increase fits within `maximumIncrease`.
public func counterStep(from old: UInt64, to new: UInt64, widthBits: Int, maximumIncrease: UInt64) -> CounterStep {
    if new >= old { return .increase(new - old) }
    let modulus: UInt64? = widthBits >= 64 ? nil : (1 << UInt64(widthBits))
    if let modulus, old < modulus {
        let wrapped = (modulus - old) + new
        if wrapped <= maximumIncrease { return .rollover(wrapped) }
    } else if modulus == nil {
        let wrapped = (UInt64.max - old) &+ new &+ 1
        if wrapped <= maximumIncrease { return .rollover(wrapped) }
    }
    return .reset
}
