import Foundation

/// Reading saved accounting snapshots back.
public enum AccountingState {
    /// The short member names ``StateJSONWriter`` writes, to the names `Codable` synthesises. Every save of a
    /// stream's state is written to flash (100 streams every `outbox.state_save`, and with every record), and the
    /// long names were more than half of each snapshot's bytes. Event members keep their long names (rare).
    /// No short name is also a long name anywhere in a snapshot, so a snapshot saved with the long names (by an
    /// earlier version, or by `JSONEncoder`) reads back the same.
    static let longNames: [String: String] = [
        "m": "meter", "p": "periodMillis", "sc": "scale", "nu": "numerator", "de": "denominator", "x": "hasExportCounter",
        "s": "state", "c": "clock", "st": "stepToleranceNanos", "l": "last", "w": "wallNanos", "mn": "monotonicNanos",
        "b": "bootID", "r": "resumed", "a": "assembler", "so": "source", "pn": "periodNanos", "bt": "boundaryToleranceNanos",
        "os": "openStartNanos", "cn": "committedNanos", "t": "totals", "ot": "openingTotals", "i": "imported", "e": "exported",
        "q": "quality", "n": "sampleCount", "pk": "peakWatts", "ev": "events", "ic": "importChannel", "ec": "exportChannel",
        "lr": "lastRaw", "pd": "paid", "lm": "lastMicrowatts", "aw": "awaiting",
    ]

    /// A decoder for ``CounterAccountant/Snapshot`` and ``PowerAccountant/Snapshot``: reads the short names
    /// `jsonBytes` writes and the long ones alike.
    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in
            let key = path[path.count - 1]
            guard key.intValue == nil, let long = longNames[key.stringValue] else { return key }
            return MemberName(long)
        }
        return decoder
    }

    private struct MemberName: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
