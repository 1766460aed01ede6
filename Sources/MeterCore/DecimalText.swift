extension Array where Element == UInt8 {
    /// Appends the decimal text of `value`, as `String(value)` writes it, without making a string (for the
    /// JSON written once per record or claim). Inlinable, so callers in other modules get it specialised.
    @inlinable
    public mutating func appendDecimal<I: FixedWidthInteger>(_ value: I) {
        guard I.bitWidth <= 64 else { return append(contentsOf: String(value).utf8) }
        if value < 0 { append(UInt8(ascii: "-")) }
        var magnitude = UInt64(value.magnitude)
        let start = count
        repeat {
            append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        self[start...].reverse()
    }
}
