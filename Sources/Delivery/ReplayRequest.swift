import Foundation

/// A request to re-publish a range of one meter's delivered records, as sent on `cmd/replay`:
/// `{"meter": "m1", "from": 120, "to": 180}` (`to` may be left out for a single record).
public struct ReplayRequest: Sendable, Hashable, CustomStringConvertible {
    public var meter: String
    public var seqs: ClosedRange<UInt64>

    public init(meter: String, seqs: ClosedRange<UInt64>) {
        self.meter = meter
        self.seqs = seqs
    }

    /// Why a `cmd/replay` payload was not a valid request.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The longest `cmd/replay` payload read; a request is a few dozen bytes.
    public static let maximumPayloadBytes = 1024
    /// The highest seq a request may name (the outbox keeps seqs as SQLite's signed 64-bit integers).
    public static let maximumSeq = UInt64(Int64.max)

    /// Parses a `cmd/replay` payload. Every number is checked: nothing a sender writes can trap.
    public init(json payload: [UInt8]) throws(ParseError) {
        let expected = "expected {\"meter\": ID, \"from\": SEQ, \"to\": SEQ} with 1 ≤ from ≤ to ≤ \(Self.maximumSeq)"
        guard payload.count <= Self.maximumPayloadBytes else {
            throw ParseError(description: "cmd/replay payload is \(payload.count) bytes, more than \(Self.maximumPayloadBytes): \(expected)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(payload)), let map = object as? [String: Any] else {
            throw ParseError(description: "cmd/replay payload is not a JSON object (\(payload.count) bytes): \(expected)")
        }
        let unknown = Set(map.keys).subtracting(["meter", "from", "to"])
        guard unknown.isEmpty else { throw ParseError(description: "cmd/replay has unknown keys \(unknown.sorted().joined(separator: ", ")): \(expected)") }
        struct Fields: Decodable {
            var meter: String
            var from: UInt64
            var to: UInt64?
        }
        let fields: Fields
        do { fields = try JSONDecoder().decode(Fields.self, from: Data(payload)) } catch {
            throw ParseError(description: "cmd/replay payload has a missing or mistyped field: \(expected)")
        }
        let to = fields.to ?? fields.from
        guard !fields.meter.isEmpty else { throw ParseError(description: "cmd/replay \"meter\" is empty: \(expected)") }
        guard fields.meter.utf8.count <= 64, !fields.meter.contains(where: { $0 == "/" || $0 == "+" || $0 == "#" || $0.isNewline }) else {
            throw ParseError(description: "cmd/replay \"meter\" is not a meter id (at most 64 bytes, no '/', '+', '#')")
        }
        guard to <= Self.maximumSeq else { throw ParseError(description: "cmd/replay \"to\" \(to) is beyond the highest seq \(Self.maximumSeq)") }
        guard fields.from >= 1 else { throw ParseError(description: "cmd/replay \"from\" is 0; seqs start at 1") }
        guard fields.from <= to else { throw ParseError(description: "cmd/replay range is empty: from \(fields.from) is after to \(to)") }
        self.init(meter: fields.meter, seqs: fields.from...to)
    }

    /// The JSON payload for this request.
    public var json: [UInt8] { Array("{\"meter\":\"\(meter)\",\"from\":\(seqs.lowerBound),\"to\":\(seqs.upperBound)}".utf8) }

    public var description: String { "\(meter) seq \(seqs.lowerBound)...\(seqs.upperBound)" }

}
