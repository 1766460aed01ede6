import MeterCore

/// Registers returned by one read: `words[i]` is register `address + i` of `space`.
public struct RegisterBlock: Sendable, Hashable {
    public var space: RegisterField.Space
    public var address: Int
    public var words: [UInt16]

    public init(space: RegisterField.Space, address: Int, words: [UInt16]) {
        self.space = space
        self.address = address
        self.words = words
    }

    public var registers: Range<Int> { address..<(address + words.count) }

    /// The words of `range`, if this block holds all of them.
    public func words(_ range: Range<Int>) -> ArraySlice<UInt16>? {
        guard range.lowerBound >= address, range.upperBound <= address + words.count else { return nil }
        return words[(range.lowerBound - address)..<(range.upperBound - address)]
    }
}

/// What one field's registers said.
public enum FieldReading: Sendable, Hashable {
    /// The value in the base unit of its dimension (W, Wh, V, A, Hz, PF).
    case value(Double)
    /// The meter marks the value as not implemented or invalid (a sentinel, a NaN, a not-implemented scale factor).
    case notImplemented
    /// No block covered the field (and its scale factor).
    case missing
}

/// The SunSpec scale factor marking "not implemented".
let sunspecScaleFactorNotImplemented: UInt16 = 0x8000

extension RegisterField {
    /// Decodes the field from a block read in one request (scale factors must come from the same read).
    public func read(from block: RegisterBlock) -> FieldReading {
        guard block.space == space, let words = block.words(registers) else { return .missing }
        guard let bits = registerBits(words, as: type, wordOrder: wordOrder, byteOrder: byteOrder),
              let raw = decodeRegisters(words, as: type, wordOrder: wordOrder, byteOrder: byteOrder) else { return .missing }
        if sentinels.contains(bits) { return .notImplemented }
        var value = raw.doubleValue
        if !value.isFinite { return .notImplemented }
        if let sfAddress = scaleFactorAddress {
            guard let sfWords = block.words(sfAddress..<(sfAddress + 1)) else { return .missing }
            let sfBits = sfWords[sfWords.startIndex]
            if sfBits == sunspecScaleFactorNotImplemented { return .notImplemented }
            let exponent = Int(Int16(bitPattern: sfBits))
            // SunSpec allows -10…10; anything else is a broken device, not a value to trust.
            guard (-10...10).contains(exponent) else { return .notImplemented }
            value = exponent >= 0 ? value * pow10(exponent) : value / pow10(-exponent)
        }
        value *= scale
        if let factor = unit.toBase { value *= factor }
        // A huge raw value times a large scale overflows: that is a broken register, not a reading.
        return value.isFinite ? .value(value) : .notImplemented
    }
}

/// 10^n exactly for small n (Foundation's pow would be fine too, but this keeps integer powers exact).
func pow10(_ n: Int) -> Double {
    var r = 1.0
    for _ in 0..<n { r *= 10 }
    return r
}

extension MeterProfile {
    /// Decodes every field found in `blocks`; fields the meter marks not implemented are left out.
    public func decode(_ blocks: [RegisterBlock]) -> [Quantity: Double] {
        var values: [Quantity: Double] = [:]
        for field in fields {
            for block in blocks where block.space == field.space && block.registers.lowerBound <= field.span.lowerBound
                && block.registers.upperBound >= field.span.upperBound {
                if case .value(let v) = field.read(from: block) { values[field.quantity] = v }
                break
            }
        }
        return values
    }
}

extension MeterCore.Unit {
    /// The unit values of this dimension are reported in after decoding (W, Wh, or the unit itself).
    public var baseSymbol: String {
        switch self {
        case .watt, .kilowatt: return "W"
        case .wattHour, .kilowattHour, .milliwattHour: return "Wh"
        default: return rawValue
        }
    }
}
