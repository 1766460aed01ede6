import Modbus

/// A fault a simulated meter shows, for testing how the gateway copes.
public struct Fault: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The meter does not answer (dead, unplugged, wrong unit id).
        case noAnswer
        /// The meter answers, but only after this long.
        case slowAnswer(Duration)
        /// The meter answers with a Modbus exception.
        case exception(ModbusException)
        /// The answer is damaged on the line (wrong CRC on RTU, wrong byte count on TCP).
        case corruptedFrame
        /// The energy counters restart from 0 (a meter replaced or reset), once, when the fault starts.
        case counterReset
        /// The meter is replaced by another one, once, when the fault starts: a new serial number (served
        /// where the profile has one, the SunSpec common model) and import counters that restart at this
        /// many Wh (export at 0), as a new meter that left the factory with a little energy on it.
        case meterReplaced(startWattHours: Double)
        /// The energy counters wrap: served raw counter values are taken modulo this many raw units
        /// (nil: the register type's own range), as a meter whose counter overflows.
        case counterRollover(modulus: Double?)
    }
    public var kind: Kind
    /// Apply to every Nth request only (1: every request). Request faults only.
    public var every: Int
    /// Simulation seconds after which the fault is active.
    public var after: Double
    /// Simulation seconds after which it stops (nil: never).
    public var until: Double?

    public init(_ kind: Kind, every: Int = 1, after: Double = 0, until: Double? = nil) {
        self.kind = kind
        self.every = max(1, every)
        self.after = after
        self.until = until
    }

    func isActive(at seconds: Double) -> Bool { seconds >= after && (until.map { seconds < $0 } ?? true) }

    public var description: String {
        let what: String
        switch kind {
        case .noAnswer: what = "no-answer"
        case .slowAnswer(let d): what = "slow \(d)"
        case .exception(let e): what = "exception \(e.rawValue) (\(e))"
        case .corruptedFrame: what = "corrupt"
        case .counterReset: what = "reset"
        case .meterReplaced(let wh): what = "replace" + (wh > 0 ? " from \(wh / 1000) kWh" : "")
        case .counterRollover(let m): what = "rollover" + (m.map { " at \($0)" } ?? "")
        }
        return what + (every > 1 ? " every \(every)" : "") + (after > 0 ? " after \(after)s" : "") + (until.map { " until \($0)s" } ?? "")
    }

    /// Parses the command-line form: `no-answer`, `slow:500ms`, `exception:2`, `corrupt`, `reset`,
    /// `replace[:KWH]`, `rollover[:MODULUS]`, each optionally followed by `/every=N`, `/after=SECONDS`, `/until=SECONDS`.
    public static func parse(_ text: String) -> Fault? {
        let parts = text.split(separator: "/")
        guard let head = parts.first else { return nil }
        let kindParts = head.split(separator: ":", maxSplits: 1).map(String.init)
        let kind: Kind
        switch kindParts[0] {
        case "no-answer", "dead": kind = .noAnswer
        case "slow":
            guard kindParts.count == 2, let d = parseDuration(kindParts[1]) else { return nil }
            kind = .slowAnswer(d)
        case "exception":
            guard kindParts.count == 2, let c = UInt8(kindParts[1]), let e = ModbusException(rawValue: c) else { return nil }
            kind = .exception(e)
        case "corrupt": kind = .corruptedFrame
        case "reset": kind = .counterReset
        case "replace":
            if kindParts.count == 2 { guard let k = Double(kindParts[1]), k >= 0, k.isFinite else { return nil }; kind = .meterReplaced(startWattHours: k * 1000) }
            else { kind = .meterReplaced(startWattHours: 0) }
        case "rollover":
            if kindParts.count == 2 { guard let m = Double(kindParts[1]), m > 0 else { return nil }; kind = .counterRollover(modulus: m) }
            else { kind = .counterRollover(modulus: nil) }
        default: return nil
        }
        var fault = Fault(kind)
        for option in parts.dropFirst() {
            let kv = option.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { return nil }
            switch kv[0] {
            case "every": guard let n = Int(kv[1]), n >= 1 else { return nil }; fault.every = n
            case "after": guard let s = Double(kv[1]), s >= 0 else { return nil }; fault.after = s
            case "until": guard let s = Double(kv[1]), s >= 0 else { return nil }; fault.until = s
            default: return nil
            }
        }
        return fault
    }
}

/// `500ms`, `2s`, `1.5s`.
func parseDuration(_ s: String) -> Duration? {
    if s.hasSuffix("ms"), let v = Double(s.dropLast(2)), v >= 0 { return .milliseconds(Int64(v.rounded())) }
    if s.hasSuffix("s"), let v = Double(s.dropLast()), v >= 0 { return .milliseconds(Int64((v * 1000).rounded())) }
    return nil
}
