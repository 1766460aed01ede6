/// base64url without padding (RFC 4648 §5), as JWS and JWK use it.
///
/// Written on bytes rather than through Foundation's base64 and string replacement: the verifier decodes
/// two of these per record, tens of thousands of times a second.
public enum Base64URL {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    /// Maps an ASCII byte to its 6-bit value, or 0xFF.
    static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    /// base64url text of `bytes`, without padding.
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        String(decoding: encodeBytes(bytes), as: UTF8.self)
    }

    /// base64url as ASCII bytes.
    public static func encodeBytes<Bytes: Sequence>(_ bytes: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        let input = Array(bytes)
        var out = [UInt8]()
        out.reserveCapacity((input.count * 4 + 2) / 3)
        append(input, to: &out)
        return out
    }

    /// Appends the base64url text of `input` to `out`, written straight into `out`'s storage.
    static func append(_ input: [UInt8], to out: inout [UInt8]) {
        let rest = input.count % 3
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: input.count / 3 * 4 + (rest == 0 ? 0 : rest + 1)))
        alphabet.withUnsafeBufferPointer { alphabet in
            input.withUnsafeBufferPointer { input in
                out.withUnsafeMutableBufferPointer { out in
                    var i = 0, o = start
                    while i + 3 <= input.count {
                        let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                        out[o] = alphabet[Int(n >> 18 & 63)]
                        out[o + 1] = alphabet[Int(n >> 12 & 63)]
                        out[o + 2] = alphabet[Int(n >> 6 & 63)]
                        out[o + 3] = alphabet[Int(n & 63)]
                        i += 3
                        o += 4
                    }
                    guard rest > 0 else { return }
                    let n = UInt32(input[i]) << 16 | (rest == 2 ? UInt32(input[i + 1]) << 8 : 0)
                    out[o] = alphabet[Int(n >> 18 & 63)]
                    out[o + 1] = alphabet[Int(n >> 12 & 63)]
                    if rest == 2 { out[o + 2] = alphabet[Int(n >> 6 & 63)] }
                }
            }
        }
    }

    /// Decodes base64url without padding; nil for anything else (padding, whitespace, other alphabets,
    /// non-zero trailing bits), so one byte sequence has exactly one text form.
    public static func decode(_ string: some StringProtocol) -> [UInt8]? {
        decode(bytes: Array(string.utf8))
    }

    /// Decodes base64url given as ASCII bytes; see ``decode(_:)``.
    public static func decode(bytes text: some Collection<UInt8>) -> [UInt8]? {
        if let decoded = text.withContiguousStorageIfAvailable({ decode(buffer: $0) }) { return decoded }
        return Array(text).withUnsafeBufferPointer { decode(buffer: $0) }
    }

    /// Four characters to three bytes at a time, straight into the result's storage.
    static func decode(buffer text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let count = text.count
        let rest = count % 4
        if rest == 1 { return nil }
        let outputCount = count / 4 * 3 + (rest == 0 ? 0 : rest - 1)
        var valid = true
        let out = reverse.withUnsafeBufferPointer { table in
            [UInt8](unsafeUninitializedCapacity: outputCount) { out, initialized in
                var i = 0, o = 0
                // A valid character maps to 0...63; an invalid one to 0xFF, whose top bits survive the OR.
                while i + 4 <= count {
                    let a = table[Int(text[i])], b = table[Int(text[i + 1])], c = table[Int(text[i + 2])], d = table[Int(text[i + 3])]
                    guard (a | b | c | d) & 0xC0 == 0 else { valid = false; break }
                    let n = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    out[o] = UInt8(truncatingIfNeeded: n >> 16)
                    out[o + 1] = UInt8(truncatingIfNeeded: n >> 8)
                    out[o + 2] = UInt8(truncatingIfNeeded: n)
                    i += 4
                    o += 3
                }
                if valid && rest > 0 {
                    let a = table[Int(text[i])], b = table[Int(text[i + 1])], c = rest == 3 ? table[Int(text[i + 2])] : 0
                    // Canonical form: the unused low bits of the last character must be zero.
                    let unused = rest == 3 ? c & 0x03 : b & 0x0F
                    if (a | b | c) & 0xC0 != 0 || unused != 0 {
                        valid = false
                    } else {
                        let n = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6
                        out[o] = UInt8(truncatingIfNeeded: n >> 16)
                        o += 1
                        if rest == 3 {
                            out[o] = UInt8(truncatingIfNeeded: n >> 8)
                            o += 1
                        }
                    }
                }
                initialized = o
            }
        }
        return valid ? out : nil
    }
}

extension Sequence where Element == UInt8 {
    /// Lower-case hex, two digits a byte.
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in self { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Upper-case hex, as OCMF writes signatures.
    public var upperHexString: String {
        let digits = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        for b in self { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    /// Decodes hex (either case); nil for odd length or a non-hex character.
    public init?(hex: some StringProtocol) {
        guard let bytes = decodeHex(Array(hex.utf8)) else { return nil }
        self = bytes
    }
}

func decodeHex(_ chars: [UInt8]) -> [UInt8]? {
    guard chars.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
    var out = [UInt8]()
    out.reserveCapacity(chars.count / 2)
    var i = 0
    while i < chars.count {
        guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}
