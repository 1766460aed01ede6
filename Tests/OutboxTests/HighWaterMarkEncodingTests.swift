import Foundation
@testable import Outbox
import TestSupport
import Testing

/// The mark's text is written byte by byte; it must stay the text `JSONEncoder` writes of the same mark, so
/// marks written before and after read alike.
@Suite(.timeLimit(.minutes(5))) struct HighWaterMarkEncodingTests {
    func hash(_ seed: UInt8) -> [UInt8] { (0..<32).map { seed &+ UInt8($0) &* 37 } }

    @Test(arguments: [0, 1, 3, 100])
    func theMarkTextIsWhatJSONEncoderWrites(streams count: Int) throws {
        var streams: [String: HighWaterMark.Entry] = [:]
        for i in 0..<count {
            // Every other stream without an interval end; hashes whose base64 has '+' and '/'.
            streams["meter-\(i)"] = HighWaterMark.Entry(seq: UInt64(i * 1_000_003 + 1), hash: hash(UInt8(truncatingIfNeeded: i * 7 + 250)),
                                                        intervalEnd: i % 2 == 0 ? 1_767_225_600_000 + Int64(i) * 1000 : nil)
        }
        let mark = HighWaterMark(epoch: "0123456789abcdef0123456789abcdef", streams: streams, generation: UInt64(count) * 977 + 1)
        let text = mark.encoded()
        let line = Array(text.split(separator: UInt8(ascii: "\n"))[0])
        #expect(String(decoding: line, as: UTF8.self) == String(decoding: mark.encodedWithJSONEncoder(), as: UTF8.self))
        #expect(try HighWaterMark.decode(text) == mark)
    }

    /// Hashes of other lengths than SHA-256's, for the base64 padding.
    @Test(arguments: [0, 1, 2, 3, 4, 5, 31, 33])
    func hashesOfAnyLengthAreWrittenAsJSONEncoderWrites(length: Int) {
        let mark = HighWaterMark(epoch: "e", streams: ["m": .init(seq: 1, hash: Array(hash(UInt8(length)).prefix(length)) + (length > 32 ? [7] : []), intervalEnd: nil)])
        let line = Array(mark.encoded().split(separator: UInt8(ascii: "\n"))[0])
        #expect(String(decoding: line, as: UTF8.self) == String(decoding: mark.encodedWithJSONEncoder(), as: UTF8.self))
    }

    @Test func stringsThatNeedEscapingStillReadBack() throws {
        let mark = HighWaterMark(epoch: "e\"poch\\/\n\t\u{1}", streams: ["m\"/\\\u{7}": .init(seq: 5, hash: hash(9), intervalEnd: -3)], generation: 2)
        #expect(try HighWaterMark.decode(mark.encoded()) == mark)
    }

    /// The outbox keeps the streams' text between claims and writes again only the streams a claim raised: after
    /// any sequence of raises (new streams among them), the text is the mark's own.
    @Test func theKeptTextAfterRaisesIsTheMarksText() throws {
        var mark = HighWaterMark(epoch: "0123456789abcdef0123456789abcdef", streams: [:])
        var text = HighWaterMark.Text()
        var generator = SplitMix64(seed: 42)
        for round in 0..<200 {
            var raised: [String: HighWaterMark.Entry] = [:]
            for _ in 0..<Int(generator.next() % 5) {
                let meter = "meter-\(generator.next() % 40)"
                let seq = (raised[meter] ?? mark.streams[meter])?.seq ?? 0
                raised[meter] = HighWaterMark.Entry(seq: seq + 1 + generator.next() % 3, hash: hash(UInt8(truncatingIfNeeded: generator.next())),
                                                    intervalEnd: generator.next() % 2 == 0 ? Int64(round) * 1000 : nil)
            }
            mark.streams.merge(raised) { $1 }
            mark.generation += 1
            text.update(raised)
            let written = text.encoded(epoch: mark.epoch, generation: mark.generation)
            #expect(written == mark.encoded())
            #expect(try HighWaterMark.decode(written) == mark)
        }
    }
}

