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

/// The range a hardware or register counter counts through before it wraps to zero.
public enum CounterRange: Sendable, Hashable, Codable {
    /// A register `bits` wide (a 32-bit Modbus energy register wraps at 2³²).
    case bits(Int)
    /// A counter that wraps at a stated value, e.g. RAPL's `max_energy_range_uj`. Following Kepler, a wrap from
    /// `old` to `new` adds `(modulus − old) + new`.
    case modulus(UInt64)
}

/// Tells a rollover from a reset for a counter with the given range (see `counterStep(from:to:widthBits:maximumIncrease:)`).
public func counterStep(from old: UInt64, to new: UInt64, range: CounterRange, maximumIncrease: UInt64) -> CounterStep {
    switch range {
    case .bits(let width):
        return counterStep(from: old, to: new, widthBits: width, maximumIncrease: maximumIncrease)
    case .modulus(let modulus):
        if new >= old { return .increase(new - old) }
        guard old <= modulus else { return .reset }
        let wrapped = (modulus - old) + new
        return wrapped <= maximumIncrease ? .rollover(wrapped) : .reset
    }
}
