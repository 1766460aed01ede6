/// Register word order of a multi-register value, as meters document it.
public enum WordOrder: String, Sendable, Hashable, CaseIterable, Codable {
    /// Most significant word first (Modbus's own convention; "ABCD").
    case bigEndian = "big"
    /// Least significant word first ("CDAB"), as Carlo Gavazzi and others use.
    case littleEndian = "little"
}

/// Byte order within each 16-bit register.
public enum ByteOrder: String, Sendable, Hashable, CaseIterable, Codable {
    /// Most significant byte first (the Modbus standard).
    case bigEndian = "big"
    /// Bytes swapped within each register ("BADC" / "DCBA" layouts).
    case swapped = "swapped"
}

/// The types a register value can be encoded as.
public enum RegisterType: String, Sendable, Hashable, CaseIterable, Codable {
    case u16, i16, u32, i32, u64, i64, float32, float64

    /// How many 16-bit registers the type occupies.
    public var registerCount: Int {
        switch self {
        case .u16, .i16: return 1
        case .u32, .i32, .float32: return 2
        case .u64, .i64, .float64: return 4
        }
    }
}

/// A decoded register value, kept exact for integers (energy counters must not pass through Double).
public enum RegisterValue: Sendable, Hashable {
    case unsigned(UInt64)
    case signed(Int64)
    case float(Double)

    public var doubleValue: Double {
        switch self {
        case .unsigned(let v): return Double(v)
        case .signed(let v): return Double(v)
        case .float(let v): return v
        }
    }
}

/// Decodes `type` from `words` (exactly `type.registerCount` of them) in the given word and byte order.
public func decodeRegisters(_ words: some Collection<UInt16>, as type: RegisterType, wordOrder: WordOrder = .bigEndian, byteOrder: ByteOrder = .bigEndian) -> RegisterValue? {
    guard let raw = registerBits(words, as: type, wordOrder: wordOrder, byteOrder: byteOrder) else { return nil }
    switch type {
    case .u16, .u32, .u64: return .unsigned(raw)
    case .i16: return .signed(Int64(Int16(bitPattern: UInt16(truncatingIfNeeded: raw))))
    case .i32: return .signed(Int64(Int32(bitPattern: UInt32(truncatingIfNeeded: raw))))
    case .i64: return .signed(Int64(bitPattern: raw))
    case .float32: return .float(Double(Float(bitPattern: UInt32(truncatingIfNeeded: raw))))
    case .float64: return .float(Double(bitPattern: raw))
    }
}

/// The value's bits in natural order (most significant first), before any sign or float interpretation:
/// what not-implemented sentinels such as SunSpec's `0x8000` or ABB's `0xFFFFFFFF` are compared with.
public func registerBits(_ words: some Collection<UInt16>, as type: RegisterType, wordOrder: WordOrder = .bigEndian, byteOrder: ByteOrder = .bigEndian) -> UInt64? {
    guard words.count == type.registerCount else { return nil }
    var ordered = Array(words)
    if wordOrder == .littleEndian { ordered.reverse() }
    if byteOrder == .swapped { ordered = ordered.map { $0.byteSwapped } }
    return ordered.reduce(UInt64(0)) { ($0 << 16) | UInt64($1) }
}

/// Encodes `value` into registers: the inverse of ``decodeRegisters(_:as:wordOrder:byteOrder:)`` (used by the simulator).
public func encodeRegisters(_ value: RegisterValue, as type: RegisterType, wordOrder: WordOrder = .bigEndian, byteOrder: ByteOrder = .bigEndian) -> [UInt16] {
    let raw: UInt64
    switch (type, value) {
    case (.float32, _): raw = UInt64(Float(value.doubleValue).bitPattern)
    case (.float64, _): raw = value.doubleValue.bitPattern
    case (_, .signed(let v)): raw = UInt64(bitPattern: v)
    case (_, .unsigned(let v)): raw = v
    case (_, .float(let v)) where !v.isFinite: raw = 0
    case (_, .float(let v)):
        // Clamp instead of trapping: the simulator may be asked for a value its type cannot hold.
        let r = v.rounded()
        raw = r < 0 ? UInt64(bitPattern: r <= -9.2e18 ? Int64.min : Int64(r)) : (r >= 1.8e19 ? UInt64.max : UInt64(r))
    }
    let n = type.registerCount
    var words = (0..<n).map { i in UInt16(truncatingIfNeeded: raw >> UInt64(16 * (n - 1 - i))) }
    if byteOrder == .swapped { words = words.map { $0.byteSwapped } }
    if wordOrder == .littleEndian { words.reverse() }
    return words
}
