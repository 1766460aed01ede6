import MeterCore

/// Writes accounting snapshots as the JSON their `Decodable` conformances read through
/// ``AccountingState/decoder()`` (the members `Codable` synthesises under short names, in declaration order;
/// optionals left out when nil; enums with associated values as `{"case":{"label":value}}`), directly into bytes.
///
/// The gateway saves a stream's snapshot with every commit that carries its records, so once per record;
/// `JSONEncoder`'s generic containers cost more than the rest of the accounting. What is written must decode
/// to the same snapshot (`AccountingTests` check that for every member); the bytes need not be `JSONEncoder`'s.
/// Member names are short (``AccountingState/longNames``): they were more than half of what each save wrote.
struct StateJSONWriter {
    private(set) var bytes: [UInt8] = []
    /// Whether the object or array being written has no member yet, one level per open bracket.
    private var empty: [Bool] = []
    /// A power value that is not a finite number was met: JSON cannot carry it (as `JSONEncoder` throws).
    private(set) var failed = false

    init() { bytes.reserveCapacity(768) }

    private mutating func separate() {
        if let last = empty.last {
            if !last { bytes.append(UInt8(ascii: ",")) }
            empty[empty.count - 1] = false
        }
    }

    /// Starts the value of member `key` of the object being written (or the next array element, for nil).
    mutating func key(_ key: StaticString?) {
        separate()
        guard let key else { return }
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func object(_ key: StaticString? = nil, _ body: (inout StateJSONWriter) -> Void) {
        nested(key, open: UInt8(ascii: "{"), close: UInt8(ascii: "}"), body)
    }

    mutating func array(_ key: StaticString, _ body: (inout StateJSONWriter) -> Void) {
        nested(key, open: UInt8(ascii: "["), close: UInt8(ascii: "]"), body)
    }

    private mutating func nested(_ key: StaticString?, open: UInt8, close: UInt8, _ body: (inout StateJSONWriter) -> Void) {
        self.key(key)
        bytes.append(open)
        empty.append(true)
        body(&self)
        empty.removeLast()
        bytes.append(close)
    }

    mutating func string(_ key: StaticString?, _ value: String) {
        self.key(key)
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(byte)
            case 0..<0x20:
                // \u00XX for every control character: valid JSON, read back as the same character.
                bytes.append(contentsOf: "\\u00".utf8)
                bytes.append(Self.hex[Int(byte >> 4)])
                bytes.append(Self.hex[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static let hex = Array("0123456789abcdef".utf8)

    mutating func integer<I: FixedWidthInteger>(_ key: StaticString?, _ value: I) {
        self.key(key)
        bytes.appendDecimal(value)
    }

    mutating func bool(_ key: StaticString?, _ value: Bool) {
        self.key(key)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    /// A finite double in its shortest text that reads back as the same value.
    mutating func double(_ key: StaticString?, _ value: Double) {
        self.key(key)
        guard value.isFinite else {
            failed = true
            bytes.append(UInt8(ascii: "0"))
            return
        }
        bytes.append(contentsOf: value.description.utf8)
    }

    /// The bytes, or nil when a value could not be written.
    var result: [UInt8]? { failed ? nil : bytes }
}

extension Timestamp {
    func write(_ key: StaticString, to w: inout StateJSONWriter) {
        w.object(key) {
            $0.integer("w", wallNanos)
            $0.integer("mn", monotonicNanos)
        }
    }
}

extension FineEnergy {
    func write(_ key: StaticString, to w: inout StateJSONWriter) { w.string(key, String(units)) }
}

extension ChannelEnergy {
    func write(_ key: StaticString, to w: inout StateJSONWriter) {
        w.object(key) {
            imported.write("i", to: &$0)
            exported.write("e", to: &$0)
        }
    }
}

extension AccountingEvent {
    func write(to w: inout StateJSONWriter) {
        w.object { w in
            switch self {
            case .rollover(let counts):
                w.object("rollover") { $0.integer("counts", counts) }
            case .reset(let from, let to, let paidCounts):
                w.object("reset") {
                    $0.integer("from", from)
                    $0.integer("to", to)
                    $0.integer("paidCounts", paidCounts)
                }
            case .implausibleIncrease(let counts, let limit):
                w.object("implausibleIncrease") {
                    $0.integer("counts", counts)
                    $0.integer("limit", limit)
                }
            case .meterReplaced(let from, let to):
                w.object("meterReplaced") {
                    $0.integer("fromCounts", from)
                    $0.integer("toCounts", to)
                }
            case .gap(let nanoseconds): w.object("gap") { $0.integer("nanoseconds", nanoseconds) }
            case .clockStep(let nanoseconds): w.object("clockStep") { $0.integer("nanoseconds", nanoseconds) }
            case .restart(let downtime): w.object("restart") { $0.integer("downtimeNanoseconds", downtime) }
            case .lateEnergy: w.object("lateEnergy") { _ in }
            }
        }
    }
}

extension CounterScale {
    func write(_ key: StaticString, to w: inout StateJSONWriter) {
        w.object(key) {
            $0.string("nu", String(numerator))
            $0.string("de", String(denominator))
        }
    }
}

extension StateJSONWriter {
    /// A snapshot: its meter and period, `members` (the source's own), then its state, if any: the clock, the
    /// assembler and `stateMembers`. Nil if a value cannot be written.
    static func snapshot(meter: MeterID, periodMillis: Int64, _ members: (inout StateJSONWriter) -> Void = { _ in },
                         state: (clock: SampleClock, assembler: IntervalAssembler)?, awaiting: Int64?,
                         _ stateMembers: (inout StateJSONWriter) -> Void) -> [UInt8]? {
        var w = StateJSONWriter()
        w.object { w in
            w.string("m", meter.rawValue)
            w.integer("p", periodMillis)
            if let awaiting { w.integer("aw", awaiting) }
            members(&w)
            if let state {
                w.object("s") { w in
                    state.clock.write("c", to: &w)
                    state.assembler.write("a", to: &w)
                    stateMembers(&w)
                }
            }
        }
        return w.result
    }
}

extension CounterAccountant.Snapshot {
    /// The snapshot as JSON that `JSONDecoder` reads back as this snapshot; nil if it holds a value JSON
    /// cannot carry (a non-finite power), as `JSONEncoder` would fail.
    public var jsonBytes: [UInt8]? {
        StateJSONWriter.snapshot(meter: meter, periodMillis: periodMillis, { w in
            scale.write("sc", to: &w)
            w.bool("x", hasExportCounter)
        }, state: state.map { ($0.clock, $0.assembler) }, awaiting: awaiting) { w in
            state?.importChannel.write("ic", to: &w)
            state?.exportChannel?.write("ec", to: &w)
        }
    }
}

extension CounterAccountant.Channel {
    func write(_ key: StaticString, to w: inout StateJSONWriter) {
        w.object(key) {
            $0.integer("lr", lastRaw)
            $0.string("pd", String(paid.value))
        }
    }
}

extension PowerAccountant.Snapshot {
    /// The snapshot as JSON that `JSONDecoder` reads back as this snapshot; nil if it holds a value JSON
    /// cannot carry (a non-finite power), as `JSONEncoder` would fail.
    public var jsonBytes: [UInt8]? {
        StateJSONWriter.snapshot(meter: meter, periodMillis: periodMillis, state: state.map { ($0.clock, $0.assembler) }, awaiting: awaiting) { w in
            if let state { w.integer("lm", state.lastMicrowatts) }
        }
    }
}
