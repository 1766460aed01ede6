public import MeterCore

/// One signed reading: what one meter stream measured over one interval, numbered and chained.
///
/// The payload is version 1 of the schema in docs/records.md. Its bytes are the RFC 8785 (JCS) canonical
/// JSON of the members below, integers only (energy in mWh, power in mW, times in ms since the Unix epoch):
/// the same record always gives the same bytes, and those bytes are what is signed and sent.
public struct ReadingRecord: Sendable, Hashable {
    /// The schema version this code writes and reads.
    public static let version = 1

    public var gateway: GatewayID
    public var meter: MeterID
    /// What the meter stream is (Modbus meter, GPU, rail, pulse input, …).
    public var sourceKind: SourceKind
    /// Which physical thing it is: a meter serial number, a GPU UUID, a hwmon path.
    public var sourceID: String
    public var epoch: String
    public var seq: UInt64
    /// Interval start, inclusive, ms since the Unix epoch (UTC).
    public var startMillis: Int64
    /// Interval end, exclusive.
    public var endMillis: Int64
    public var importTotal: MilliwattHours
    public var exportTotal: MilliwattHours
    public var importDelta: MilliwattHours
    public var exportDelta: MilliwattHours
    /// Average active power over the interval, in mW.
    public var averageMilliwatts: Int64
    /// Highest active power seen in the interval, in mW.
    public var peakMilliwatts: Int64
    public var sampleCount: Int64
    public var quality: Quality
    /// SHA-256 of the signed payload bytes of the previous record of this stream; zeros for the first.
    public var prev: [UInt8]
    /// The RFC 7638 thumbprint of the key that signs this record.
    public var keyID: String
    /// Set on the first record signed by a new key: the key id that signed the previous record
    /// (a new chain segment after key rotation).
    public var previousKeyID: String?
    /// Seqs of this stream the gateway's store no longer holds, so cannot replay, stated signed: records lost
    /// with a damaged database after they were published (the first record after the recovery), or unsent
    /// records the `drop-oldest` quota policy deleted (the next records of the stream, one statement each).
    /// The stream continues after them unbroken.
    public var storeLost: StoreLoss?
    /// The gateway's clock when it signed the record (`clock`); nil in records made before the member existed.
    public var clock: ClockState?
    /// Where ``sourceID`` comes from (`source.identity`): read from the meter, configured, or a mismatch with the
    /// configured serial. Nil: the id names a position or path (rails, S0 inputs, meters without identity).
    public var sourceIdentity: SourceIdentityOrigin?
    /// Set on the record of the interval in which the meter behind the stream was found replaced (`replaced`).
    public var replacement: MeterReplacement?

    /// A record from its members; ``validate()`` says whether it may be signed.
    public init(
        gateway: GatewayID, meter: MeterID, sourceKind: SourceKind, sourceID: String, epoch: String, seq: UInt64,
        startMillis: Int64, endMillis: Int64, importTotal: MilliwattHours, exportTotal: MilliwattHours,
        importDelta: MilliwattHours, exportDelta: MilliwattHours, averageMilliwatts: Int64, peakMilliwatts: Int64,
        sampleCount: Int64, quality: Quality, prev: [UInt8], keyID: String, previousKeyID: String? = nil,
        storeLost: StoreLoss? = nil, clock: ClockState? = nil, sourceIdentity: SourceIdentityOrigin? = nil,
        replacement: MeterReplacement? = nil
    ) {
        self.gateway = gateway
        self.meter = meter
        self.sourceKind = sourceKind
        self.sourceID = sourceID
        self.epoch = epoch
        self.seq = seq
        self.startMillis = startMillis
        self.endMillis = endMillis
        self.importTotal = importTotal
        self.exportTotal = exportTotal
        self.importDelta = importDelta
        self.exportDelta = exportDelta
        self.averageMilliwatts = averageMilliwatts
        self.peakMilliwatts = peakMilliwatts
        self.sampleCount = sampleCount
        self.quality = quality
        self.prev = prev
        self.keyID = keyID
        self.previousKeyID = previousKeyID
        self.storeLost = storeLost
        self.clock = clock
        self.sourceIdentity = sourceIdentity
        self.replacement = replacement
    }

    /// The stream this record belongs to.
    public var stream: StreamKey { StreamKey(gateway: gateway.rawValue, meter: meter.rawValue, epoch: epoch) }

    /// The record as a JSON object (member order does not matter: ``canonicalBytes`` sorts).
    public var json: JSONValue {
        var members: [(String, JSONValue)] = [
            ("v", .integer(Self.version)),
            ("gateway", .string(gateway.rawValue)),
            ("meter", .string(meter.rawValue)),
            ("source", .object([("kind", .string(sourceKind.rawValue)), ("id", .string(sourceID))]
                               + (sourceIdentity.map { [("identity", JSONValue.string($0.rawValue))] } ?? []))),
            ("epoch", .string(epoch)),
            ("seq", .integer(seq)),
            ("start_ms", .integer(startMillis)),
            ("end_ms", .integer(endMillis)),
            ("import_total_mwh", .integer(importTotal.rawValue)),
            ("export_total_mwh", .integer(exportTotal.rawValue)),
            ("import_mwh", .integer(importDelta.rawValue)),
            ("export_mwh", .integer(exportDelta.rawValue)),
            ("avg_mw", .integer(averageMilliwatts)),
            ("peak_mw", .integer(peakMilliwatts)),
            ("samples", .integer(sampleCount)),
            ("quality", .string(quality.rawValue)),
            ("prev", .string(prev.hexString)),
            ("kid", .string(keyID)),
        ]
        if let previousKeyID { members.append(("prev_kid", .string(previousKeyID))) }
        if let clock { members.append(("clock", .string(clock.rawValue))) }
        if let storeLost {
            var statement: [(String, JSONValue)] = [("from_seq", .integer(storeLost.seqs.lowerBound)), ("to_seq", .integer(storeLost.seqs.upperBound))]
            // A damage statement keeps the member's first form, without `cause`.
            if storeLost.cause != .damage { statement.append(("cause", .string(storeLost.cause.rawValue))) }
            members.append(("store_lost", .object(statement)))
        }
        if let replacement {
            var statement: [(String, JSONValue)] = [
                ("old", .string(replacement.old)), ("new", .string(replacement.new)), ("at_ms", .integer(replacement.atMillis)),
                ("old_import_mwh", .integer(replacement.oldImport.rawValue)), ("new_import_mwh", .integer(replacement.newImport.rawValue)),
            ]
            if let e = replacement.oldExport { statement.append(("old_export_mwh", .integer(e.rawValue))) }
            if let e = replacement.newExport { statement.append(("new_export_mwh", .integer(e.rawValue))) }
            members.append(("replaced", .object(statement)))
        }
        return .object(members)
    }

    /// The canonical payload bytes (JCS): the bytes `json.canonicalBytes` gives, written directly in JCS
    /// member order (the signer makes one per record; building, sorting and writing a ``JSONValue`` tree
    /// cost several times more).
    public var canonicalBytes: [UInt8] {
        var out = CanonicalObjectWriter(capacity: 640)
        out.member("avg_mw", integer: averageMilliwatts)
        if let clock { out.member("clock", string: clock.rawValue) }
        out.member("end_ms", integer: endMillis)
        out.member("epoch", string: epoch)
        out.member("export_mwh", integer: exportDelta.rawValue)
        out.member("export_total_mwh", integer: exportTotal.rawValue)
        out.member("gateway", string: gateway.rawValue)
        out.member("import_mwh", integer: importDelta.rawValue)
        out.member("import_total_mwh", integer: importTotal.rawValue)
        out.member("kid", string: keyID)
        out.member("meter", string: meter.rawValue)
        out.member("peak_mw", integer: peakMilliwatts)
        out.member("prev", hex: prev)
        if let previousKeyID { out.member("prev_kid", string: previousKeyID) }
        out.member("quality", string: quality.rawValue)
        if let replacement {
            out.member("replaced") { r in
                r.member("at_ms", integer: replacement.atMillis)
                r.member("new", string: replacement.new)
                if let e = replacement.newExport { r.member("new_export_mwh", integer: e.rawValue) }
                r.member("new_import_mwh", integer: replacement.newImport.rawValue)
                r.member("old", string: replacement.old)
                if let e = replacement.oldExport { r.member("old_export_mwh", integer: e.rawValue) }
                r.member("old_import_mwh", integer: replacement.oldImport.rawValue)
            }
        }
        out.member("samples", integer: sampleCount)
        out.member("seq", integer: seq)
        out.member("source") { source in
            source.member("id", string: sourceID)
            if let sourceIdentity { source.member("identity", string: sourceIdentity.rawValue) }
            source.member("kind", string: sourceKind.rawValue)
        }
        out.member("start_ms", integer: startMillis)
        if let storeLost {
            out.member("store_lost") { lost in
                // A damage statement keeps the member's first form, without `cause`.
                if storeLost.cause != .damage { lost.member("cause", string: storeLost.cause.rawValue) }
                lost.member("from_seq", integer: storeLost.seqs.lowerBound)
                lost.member("to_seq", integer: storeLost.seqs.upperBound)
            }
        }
        out.member("v", integer: Self.version)
        return out.finish()
    }

    /// Checks what a signer must never sign: a bad epoch, `seq` 0, an empty or inverted interval,
    /// negative energy, a `prev` that is not 32 bytes.
    public func validate() throws(RecordError) {
        if let problem = Self.epochProblem(epoch) { throw .invalid(field: "epoch", reason: problem) }
        guard seq >= 1 else { throw .invalid(field: "seq", reason: "must be at least 1") }
        guard endMillis > startMillis else {
            throw .invalid(field: "end_ms", reason: "interval end \(endMillis) is not after its start \(startMillis)")
        }
        for (name, value) in [("import_total_mwh", importTotal), ("export_total_mwh", exportTotal),
                              ("import_mwh", importDelta), ("export_mwh", exportDelta)] where value.rawValue < 0 {
            throw .invalid(field: name, reason: "energy must not be negative (found \(value.rawValue))")
        }
        guard sampleCount >= 0 else { throw .invalid(field: "samples", reason: "must not be negative") }
        guard prev.count == 32 else { throw .invalid(field: "prev", reason: "must be 32 bytes (SHA-256), found \(prev.count)") }
        guard !keyID.isEmpty else { throw .invalid(field: "kid", reason: "must not be empty") }
        if let r = replacement {
            for (name, value) in [("old_import_mwh", Optional(r.oldImport)), ("new_import_mwh", r.newImport), ("old_export_mwh", r.oldExport),
                                  ("new_export_mwh", r.newExport)] {
                if let value, value.rawValue < 0 { throw .invalid(field: "replaced.\(name)", reason: "must not be negative (found \(value.rawValue))") }
            }
            guard !r.old.isEmpty, !r.new.isEmpty, r.old != r.new else {
                throw .invalid(field: "replaced", reason: "must name two different meters (old '\(r.old)', new '\(r.new)')")
            }
        }
    }

    /// Why `epoch` is not a valid epoch id (1 to 64 of `A-Z a-z 0-9 - _`), or nil.
    public static func epochProblem(_ epoch: String) -> String? {
        if epoch.isEmpty || epoch.utf8.count > 64 { return "must be 1 to 64 characters long" }
        let ok = epoch.utf8.allSatisfy {
            (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
        }
        return ok ? nil : "may hold only A-Z, a-z, 0-9, '-' and '_' (found '\(epoch)')"
    }
}

/// (gateway, meter, epoch): the unit within which `seq` rises by one and `prev` chains.
public struct StreamKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var gateway: String
    public var meter: String
    public var epoch: String

    /// The stream (gateway, meter, epoch).
    public init(gateway: String, meter: String, epoch: String) {
        self.gateway = gateway
        self.meter = meter
        self.epoch = epoch
    }

    public var description: String { "\(gateway)/\(meter) epoch \(epoch)" }

    public static func < (a: StreamKey, b: StreamKey) -> Bool {
        (a.gateway, a.meter, a.epoch) < (b.gateway, b.meter, b.epoch)
    }
}

/// Why a record cannot be built or read.
public enum RecordError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A member is missing, of the wrong type or out of range.
    case invalid(field: String, reason: String)
    /// The payload is not JSON.
    case notJSON(JSONParseError)
    /// A version this code does not read.
    case unsupportedVersion(String)
    /// A member this version does not define.
    case unknownMember(String)

    public var description: String {
        switch self {
        case .invalid(let field, let reason): return "record member '\(field)' \(reason)"
        case .notJSON(let e): return "record payload is not JSON: \(e)"
        case .unsupportedVersion(let v): return "record version \(v) is not supported (this verifier reads version \(ReadingRecord.version))"
        case .unknownMember(let m): return "record member '\(m)' is not part of schema version \(ReadingRecord.version)"
        }
    }
}

// MARK: - Reading

extension ReadingRecord {
    static let members: [String] = [
        "v", "gateway", "meter", "source", "epoch", "seq", "start_ms", "end_ms", "import_total_mwh", "export_total_mwh",
        "import_mwh", "export_mwh", "avg_mw", "peak_mw", "samples", "quality", "prev", "kid", "prev_kid",
        "store_lost", "clock", "replaced",
    ]

    /// Reads a version-1 record from its payload bytes. Strict: unknown members, missing members,
    /// non-integer numbers and invalid ids are errors.
    public init(payload: some Collection<UInt8>) throws(RecordError) {
        let value: JSONValue
        do { value = try JSONValue.parse(payload) } catch { throw .notJSON(error) }
        try self.init(json: value)
    }

    /// Reads a version-1 record from a parsed JSON object.
    public init(json value: JSONValue) throws(RecordError) {
        guard case .object(let members) = value else { throw .invalid(field: "(payload)", reason: "must be a JSON object") }
        for (k, _) in members where !Self.members.contains(k) { throw .unknownMember(k) }
        let map = MemberTable(members)
        guard case .number(let v)? = map["v"] else { throw .invalid(field: "v", reason: "is missing") }
        guard v == String(Self.version) else { throw .unsupportedVersion(v) }

        func string(_ key: String) throws(RecordError) -> String {
            guard let m = map[key] else { throw .invalid(field: key, reason: "is missing") }
            guard case .string(let s) = m else { throw .invalid(field: key, reason: "must be a string") }
            return s
        }
        func integer(_ key: String) throws(RecordError) -> Int64 {
            guard let m = map[key] else { throw .invalid(field: key, reason: "is missing") }
            guard case .number(let n) = m, let i = Int64(n) else { throw .invalid(field: key, reason: "must be an integer") }
            return i
        }
        func identifier(_ key: String) throws(RecordError) -> Identifier {
            let s = try string(key)
            do { return try Identifier(validating: s) } catch { throw .invalid(field: key, reason: "id '\(s)' \(error)") }
        }

        self.gateway = try identifier("gateway")
        self.meter = try identifier("meter")
        guard case .object(let source)? = map["source"] else { throw .invalid(field: "source", reason: "must be an object {kind, id}") }
        let sourceForm = "must be {\"id\": string, \"kind\": string} with an optional \"identity\": read, configured or mismatch"
        guard case .string(let kind)? = map["source"]?["kind"], case .string(let sourceID)? = map["source"]?["id"],
              source.allSatisfy({ ["id", "kind", "identity"].contains($0.0) }) else {
            throw .invalid(field: "source", reason: sourceForm)
        }
        if let origin = map["source"]?["identity"] {
            guard case .string(let text) = origin, let parsed = SourceIdentityOrigin(rawValue: text) else { throw .invalid(field: "source.identity", reason: sourceForm) }
            self.sourceIdentity = parsed
        } else {
            self.sourceIdentity = nil
        }
        guard let sourceKind = SourceKind(rawValue: kind) else {
            throw .invalid(field: "source.kind", reason: "'\(kind)' is not one of \(SourceKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.sourceKind = sourceKind
        self.sourceID = sourceID
        self.epoch = try string("epoch")
        let seq = try integer("seq")
        guard seq >= 1 else { throw .invalid(field: "seq", reason: "must be at least 1") }
        self.seq = UInt64(seq)
        self.startMillis = try integer("start_ms")
        self.endMillis = try integer("end_ms")
        self.importTotal = MilliwattHours(try integer("import_total_mwh"))
        self.exportTotal = MilliwattHours(try integer("export_total_mwh"))
        self.importDelta = MilliwattHours(try integer("import_mwh"))
        self.exportDelta = MilliwattHours(try integer("export_mwh"))
        self.averageMilliwatts = try integer("avg_mw")
        self.peakMilliwatts = try integer("peak_mw")
        self.sampleCount = try integer("samples")
        let quality = try string("quality")
        guard let q = Quality(rawValue: quality) else {
            throw .invalid(field: "quality", reason: "'\(quality)' is not one of \(Quality.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.quality = q
        let prevHex = try string("prev")
        guard prevHex.utf8.count == 64, let prev = [UInt8](hex: prevHex) else {
            throw .invalid(field: "prev", reason: "must be 64 hex digits (SHA-256)")
        }
        self.prev = prev
        self.keyID = try string("kid")
        if map["prev_kid"] != nil { self.previousKeyID = try string("prev_kid") } else { self.previousKeyID = nil }
        if map["clock"] != nil {
            let text = try string("clock")
            guard let clock = ClockState(rawValue: text) else {
                throw .invalid(field: "clock", reason: "'\(text)' is not one of \(ClockState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.clock = clock
        } else {
            self.clock = nil
        }
        if let lost = map["store_lost"] {
            let form = "must be {\"from_seq\": integer, \"to_seq\": integer} with 1 <= from_seq <= to_seq < seq, and an optional \"cause\": \"quota\""
            guard case .object(let statement) = lost, case .number(let from)? = lost["from_seq"], case .number(let to)? = lost["to_seq"],
                  let first = UInt64(from), let last = UInt64(to), first >= 1, first <= last, last < self.seq else {
                throw .invalid(field: "store_lost", reason: form)
            }
            var cause = StoreLoss.Cause.damage
            for (key, value) in statement where key != "from_seq" && key != "to_seq" {
                // Absent means damage; only the other causes are written out.
                guard key == "cause", case .string(let name) = value, let named = StoreLoss.Cause(rawValue: name), named != .damage else {
                    throw .invalid(field: "store_lost", reason: form)
                }
                cause = named
            }
            self.storeLost = StoreLoss(seqs: first...last, cause: cause)
        } else {
            self.storeLost = nil
        }
        self.replacement = try map["replaced"].map { (statement) throws(RecordError) in try Self.replacement(statement) }
        try validate()
    }
}

extension ReadingRecord {
    /// Reads the `replaced` member: old and new source ids, when, and both meters' counters.
    static func replacement(_ value: JSONValue) throws(RecordError) -> MeterReplacement {
        let form = "must be {\"old\": string, \"new\": string, \"at_ms\": integer, \"old_import_mwh\": integer, \"new_import_mwh\": integer} "
            + "with optional \"old_export_mwh\" and \"new_export_mwh\""
        guard case .object(let members) = value,
              members.allSatisfy({ ["old", "new", "at_ms", "old_import_mwh", "new_import_mwh", "old_export_mwh", "new_export_mwh"].contains($0.0) }),
              case .string(let old)? = value["old"], case .string(let new)? = value["new"],
              case .number(let at)? = value["at_ms"], let atMillis = Int64(at),
              case .number(let oldImport)? = value["old_import_mwh"], let oi = Int64(oldImport),
              case .number(let newImport)? = value["new_import_mwh"], let ni = Int64(newImport)
        else { throw .invalid(field: "replaced", reason: form) }
        func optional(_ key: String) throws(RecordError) -> MilliwattHours? {
            guard let member = value[key] else { return nil }
            guard case .number(let n) = member, let i = Int64(n) else { throw .invalid(field: "replaced.\(key)", reason: "must be an integer") }
            return MilliwattHours(i)
        }
        return MeterReplacement(old: old, new: new, atMillis: atMillis, oldImport: MilliwattHours(oi), oldExport: try optional("old_export_mwh"),
                                newImport: MilliwattHours(ni), newExport: try optional("new_export_mwh"))
    }
}

/// Looks members up by a linear scan: a record has 19, and this avoids hashing every key of every record.
struct MemberTable {
    let members: [(String, JSONValue)]
    init(_ members: [(String, JSONValue)]) { self.members = members }
    subscript(key: String) -> JSONValue? { members.first { $0.0 == key }?.1 }
}

/// Writes a JSON object whose members the caller gives in JCS order (sorted by UTF-16 code units, which for
/// the ASCII names used here is byte order), with ``JSONValue``'s string escaping and integers as decimal text:
/// the bytes ``JSONValue/canonicalBytes`` makes of the same members, without the tree and its sorting.
struct CanonicalObjectWriter {
    private(set) var bytes: [UInt8]
    private var first = true

    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
        bytes.append(UInt8(ascii: "{"))
    }

    private mutating func name(_ name: StaticString) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func member(_ key: StaticString, string: String) {
        name(key)
        JSONValue.writeString(string, into: &bytes)
    }

    mutating func member<I: FixedWidthInteger>(_ key: StaticString, integer: I) {
        name(key)
        bytes.appendDecimal(integer)
    }

    mutating func member(_ key: StaticString, hex value: [UInt8]) {
        name(key)
        bytes.append(UInt8(ascii: "\""))
        for byte in value {
            bytes.append(JSONValue.hexDigits[Int(byte >> 4)])
            bytes.append(JSONValue.hexDigits[Int(byte & 0xF)])
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// A member whose value is an object; `body` writes its members, in JCS order.
    mutating func member(_ key: StaticString, object body: (inout CanonicalObjectWriter) -> Void) {
        name(key)
        bytes.append(UInt8(ascii: "{"))
        first = true
        body(&self)
        bytes.append(UInt8(ascii: "}"))
        first = false
    }

    mutating func finish() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }
}
