import Crypto
import Foundation
import MeterCore
import Outbox
import Testing

/// Test records: the text "meter|epoch|seq|prev-hex|payload" and its SHA-256, so a chain can be checked from the
/// bytes alone (the signing code supplies real records; these stand in where only the chaining matters).
public func chainedRecord(_ meter: String, payload: String = "") -> RecordBuilder {
    { position in
        let text = "\(meter)|\(position.epoch)|\(position.seq)|\(hex(position.prev))|\(payload)"
        let bytes = Array(text.utf8)
        return (bytes, Array(SHA256.hash(data: bytes)))
    }
}

/// Lower-case hex, two digits a byte.
public func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

/// Checks that `records` (one meter, seq order) start at `firstSeq`, rise by one and chain their `prev`.
public func expectChain(_ records: [OutboxRecord], firstSeq: UInt64 = 1, previousHash: [UInt8] = StreamPosition.zeroHash,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    var expectedPrev = previousHash
    for (offset, record) in records.enumerated() {
        #expect(record.seq == firstSeq + UInt64(offset), sourceLocation: sourceLocation)
        let fields = String(decoding: record.bytes, as: UTF8.self).split(separator: "|", omittingEmptySubsequences: false)
        #expect(fields.count >= 4 && fields[3] == hex(expectedPrev)[...], "seq \(record.seq) prev", sourceLocation: sourceLocation)
        #expect(record.hash == Array(SHA256.hash(data: record.bytes)), sourceLocation: sourceLocation)
        expectedPrev = record.hash
    }
}
