#if canImport(Glibc)
import Glibc
#endif

/// The clock state OCMF puts after each time stamp (`U`, `I`, `S`, `R`).
public enum OCMFTimeStatus: String, Sendable, Hashable, CaseIterable {
    /// The clock is not synchronised.
    case unknown = "U"
    /// An informative clock: set, but not known to be synchronised.
    case informative = "I"
    /// Synchronised (NTP/PTP): the only state the Transparenzsoftware accepts without a warning.
    case synchronized = "S"
    /// A relative time (a metrologically accurate duration).
    case relative = "R"
}

/// OCMF text helpers: time stamps and exact decimals.
public enum OCMFFormat {
    /// An OCMF `TM` in UTC, e.g. `2025-01-15T10:00:00,000+0000 S`. The corresponding C function is `gmtime_r`.
    public static func time(epochMillis ms: Int64, status: OCMFTimeStatus) -> String {
        let seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000
        let millis = ms - seconds * 1000
        var t = time_t(seconds)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(Int(tm.tm_year) + 1900, 4))-\(pad(Int(tm.tm_mon) + 1, 2))-\(pad(Int(tm.tm_mday), 2))T"
            + "\(pad(Int(tm.tm_hour), 2)):\(pad(Int(tm.tm_min), 2)):\(pad(Int(tm.tm_sec), 2)),"
            + "\(pad(Int(millis), 3))+0000 \(status.rawValue)"
    }

    /// `units / 10^scale` written with exactly `scale` decimals, e.g. (123456, 2) → `1234.56`. No floating
    /// point is involved, so the text is exact.
    public static func decimal(_ units: Int64, scale: Int) -> String {
        precondition(scale >= 0 && scale <= 18)
        var divisor: Int64 = 1
        for _ in 0..<scale { divisor *= 10 }
        let negative = units < 0
        let magnitude = units.magnitude
        let whole = magnitude / UInt64(divisor)
        let fraction = magnitude % UInt64(divisor)
        var text = (negative ? "-" : "") + String(whole)
        if scale > 0 {
            let f = String(fraction)
            text += "." + String(repeating: "0", count: scale - f.count) + f
        }
        return text
    }
}

/// One reading (`RD` entry) of an OCMF payload.
public struct OCMFReading: Sendable, Hashable {
    public var time: String
    /// The value as its exact JSON number text.
    public var value: String
    /// OBIS code, e.g. `01-00:01.08.00*FF` (import) or `01-00:02.08.00*FF` (export).
    public var obis: String
    public var unit: String
    /// `AC` or `DC`, or nil when not known.
    public var currentType: String?
    public var errorFlags: String
    /// Meter status: `G` is OK.
    public var status: String

    /// One reading; `value` is JSON number text (see ``OCMFFormat/decimal(_:scale:)``), signed exactly as given.
    public init(time: String, value: String, obis: String, unit: String, currentType: String? = nil, errorFlags: String = "", status: String = "G") {
        self.time = time
        self.value = value
        self.obis = obis
        self.unit = unit
        self.currentType = currentType
        self.errorFlags = errorFlags
        self.status = status
    }

    var json: JSONValue {
        var m: [(String, JSONValue)] = [("TM", .string(time)), ("RV", .number(value)), ("RI", .string(obis)), ("RU", .string(unit))]
        if let currentType { m.append(("RT", .string(currentType))) }
        m.append(("EF", .string(errorFlags)))
        m.append(("ST", .string(status)))
        return .object(m)
    }
}

/// An OCMF 1.0 payload (fiscal context), written in the customary field order of the specification.
public struct OCMFPayload: Sendable, Hashable {
    public var gatewayIdentification: String?
    public var gatewaySerial: String?
    public var gatewayVersion: String?
    /// Pagination, e.g. `F100`.
    public var pagination: String
    public var meterVendor: String?
    public var meterModel: String?
    public var meterSerial: String
    public var meterFirmware: String?
    public var readings: [OCMFReading]
    /// Vendor members (keys starting with `U`–`Z`), signed and ignored by OCMF verifiers.
    public var vendor: [(String, JSONValue)]

    /// A fiscal-context payload; `IS`, `IL` and `IT` are always written as `false`, `NONE`, `NONE`.
    public init(gatewayIdentification: String? = nil, gatewaySerial: String? = nil, gatewayVersion: String? = nil,
                pagination: String, meterVendor: String? = nil, meterModel: String? = nil, meterSerial: String,
                meterFirmware: String? = nil, readings: [OCMFReading], vendor: [(String, JSONValue)] = []) {
        self.gatewayIdentification = gatewayIdentification
        self.gatewaySerial = gatewaySerial
        self.gatewayVersion = gatewayVersion
        self.pagination = pagination
        self.meterVendor = meterVendor
        self.meterModel = meterModel
        self.meterSerial = meterSerial
        self.meterFirmware = meterFirmware
        self.readings = readings
        self.vendor = vendor
    }

    public static func == (a: OCMFPayload, b: OCMFPayload) -> Bool { a.bytes == b.bytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(bytes) }

    /// The payload JSON, with no whitespace. Never contains `|`: strings holding one are rejected by
    /// ``RecordSigner`` before anything is signed.
    public var bytes: [UInt8] {
        var m: [(String, JSONValue)] = [("FV", .string("1.0"))]
        if let gatewayIdentification { m.append(("GI", .string(gatewayIdentification))) }
        if let gatewaySerial { m.append(("GS", .string(gatewaySerial))) }
        if let gatewayVersion { m.append(("GV", .string(gatewayVersion))) }
        m.append(("PG", .string(pagination)))
        if let meterVendor { m.append(("MV", .string(meterVendor))) }
        if let meterModel { m.append(("MM", .string(meterModel))) }
        m.append(("MS", .string(meterSerial)))
        if let meterFirmware { m.append(("MF", .string(meterFirmware))) }
        m.append(("IS", .bool(false)))
        m.append(("IL", .string("NONE")))
        m.append(("IT", .string("NONE")))
        m.append(("RD", .array(readings.map(\.json))))
        m += vendor
        return JSONValue.object(m).orderedBytes
    }
}

/// An `OCMF|payload|signature` record split into its parts; the payload bytes are kept exactly as received.
public struct OCMFRecord: Sendable {
    public static let algorithm = "ECDSA-secp256r1-SHA256"

    /// The exact signed bytes (between the first and second `|`).
    public var payloadBytes: [UInt8]
    public var payload: JSONValue
    /// The DER signature decoded from `SD`.
    public var signature: [UInt8]

    /// Builds the record text: `OCMF|payload|{"SA":"ECDSA-secp256r1-SHA256","SD":"<DER hex>"}`.
    public static func text(payload: [UInt8], derSignature: [UInt8]) -> [UInt8] {
        Array("OCMF|".utf8) + payload + Array("|{\"SA\":\"\(algorithm)\",\"SD\":\"\(derSignature.upperHexString)\"}".utf8)
    }

    /// Splits and decodes a record. Accepts `SE` hex (default) or base64 and only the P-256/SHA-256 algorithm.
    public init(_ line: some Collection<UInt8>) throws(EnvelopeError) {
        let bytes = Array(line)
        let parts = bytes.split(separator: UInt8(ascii: "|"), omittingEmptySubsequences: false)
        guard parts.count == 3, Array(parts[0]) == Array("OCMF".utf8) else {
            throw .malformed("an OCMF record is OCMF|payload|signature with exactly two '|' separators")
        }
        payloadBytes = Array(parts[1])
        do { payload = try JSONValue.parse(payloadBytes) } catch { throw .malformed("OCMF payload: \(error)") }
        let sigSection: JSONValue
        do { sigSection = try JSONValue.parse(parts[2]) } catch { throw .malformed("OCMF signature section: \(error)") }
        if let sa = sigSection["SA"] {
            guard sa.stringValue == Self.algorithm else {
                throw .unsupportedAlgorithm("OCMF SA \(sa.stringValue ?? "(not a string)"); only \(Self.algorithm) is accepted")
            }
        }
        guard let sd = sigSection["SD"]?.stringValue else { throw .malformed("OCMF signature section has no SD string") }
        let encoding = sigSection["SE"]?.stringValue ?? "hex"
        let decoded: [UInt8]?
        switch encoding {
        case "hex": decoded = [UInt8](hex: sd)
        case "base64": decoded = decodeBase64(sd)
        default: throw .malformed("OCMF SE '\(encoding)' is neither hex nor base64")
        }
        guard let decoded, !decoded.isEmpty else { throw .malformed("OCMF SD is not valid \(encoding)") }
        signature = decoded
    }

    /// Checks the DER signature over the payload bytes with a P-256 key.
    public func isValid(with key: VerifyingKey) -> Bool {
        key.isValidDERSignature(signature, for: payloadBytes)
    }
}

/// Standard base64 (with or without padding), for OCMF `SE: base64`.
func decodeBase64(_ s: String) -> [UInt8]? {
    var t = Array(s.utf8)
    while t.last == UInt8(ascii: "=") { t.removeLast() }
    let mapped = t.map { c -> UInt8 in
        c == UInt8(ascii: "+") ? UInt8(ascii: "-") : c == UInt8(ascii: "/") ? UInt8(ascii: "_") : c
    }
    return Base64URL.decode(bytes: mapped)
}
