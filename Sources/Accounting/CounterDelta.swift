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

/// Tells a rollover from a reset: a wrap must fit within `maximumIncrease` (rated power × elapsed time), and
/// when there is no such bound (`maximumIncrease == .max`), the old value must lie in the top eighth of the
/// range and the new one in the bottom eighth. Without that second rule any decrease would pass as a wrap of
/// up to the whole range — for a 64-bit counter an absurd amount of energy.
public func counterStep(from old: UInt64, to new: UInt64, widthBits: Int, maximumIncrease: UInt64) -> CounterStep {
    if new >= old { return .increase(new - old) }
    let modulus: UInt64? = widthBits >= 64 ? nil : (1 << UInt64(widthBits))
    if let modulus, old < modulus {
        let wrapped = (modulus - old) + new
        if wrapped <= maximumIncrease && wrapPlausible(old: old, new: new, top: modulus - 1, bounded: maximumIncrease != .max) {
            return .rollover(wrapped)
        }
    } else if modulus == nil {
        let wrapped = (UInt64.max - old) &+ new &+ 1
        if wrapped <= maximumIncrease && wrapPlausible(old: old, new: new, top: .max, bounded: maximumIncrease != .max) {
            return .rollover(wrapped)
        }
    }
    return .reset
}

/// Without a rate bound, a wrap is believed only from the top eighth of the range to the bottom eighth.
func wrapPlausible(old: UInt64, new: UInt64, top: UInt64, bounded: Bool) -> Bool {
    if bounded { return true }
    let eighth = top / 8
    return old >= top - eighth && new <= eighth
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
        return wrapped <= maximumIncrease && wrapPlausible(old: old, new: new, top: modulus, bounded: maximumIncrease != .max) ? .rollover(wrapped) : .reset
    }
}
