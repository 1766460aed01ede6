import Foundation
import MeterCore
import Signing
import Testing

/// Each way a stream can be wrong, produced with real signatures, found by the verifier.
@Suite(.timeLimit(.minutes(5))) struct ChainTests {
    static let envelopes: [(RecordEnvelope, SigningAlgorithm)] = [(.jws, .eddsa), (.ocmf, .es256)]

    func stream(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm, count: Int = 10) throws -> (StreamBuilder, SigningKey) {
        let key = SigningKey.generate(algorithm)
        var s = try StreamBuilder(key: key, envelope: envelope)
        try s.next(count)
        return (s, key)
    }

    @Test(arguments: envelopes)
    func anIntactStreamPasses(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let (s, key) = try stream(envelope, algorithm)
        let report = verifyLines(s.records.map(\.bytes), keys: [key.publicKey], fromStart: true)
        #expect(report.passed, "\(report.text)")
        #expect(report.streams.count == 1)
        #expect(report.streams[0].verified == 10)
        #expect(report.streams[0].firstSeq == 1 && report.streams[0].lastSeq == 10)
    }

    @Test(arguments: envelopes)
    func missingRecordsAreGaps(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let (s, key) = try stream(envelope, algorithm)
        var lines = s.records.map(\.bytes)
        lines.removeSubrange(3...5)   // seq 4, 5, 6
        lines.remove(at: 5)           // seq 9 (index 8 originally)
        let report = verifyLines(lines, keys: [key.publicKey])
        #expect(!report.passed)
        #expect(report.streams[0].gaps == [4...6, 9...9])
        #expect(report.streams[0].brokenLinks.isEmpty)
        #expect(report.text.contains("gaps (missing seq): 4…6, 9"))
    }

    @Test func aMissingHeadIsAGapOnlyWhenTheInputClaimsToStartAtTheBeginning() throws {
        let (s, key) = try stream(.jws, .eddsa)
        let lines = Array(s.records.map(\.bytes).dropFirst(2))
        #expect(verifyLines(lines, keys: [key.publicKey]).passed)
        #expect(verifyLines(lines, keys: [key.publicKey], fromStart: true).streams[0].gaps == [1...2])
    }

    @Test(arguments: envelopes)
    func repeatedRecordsAreDuplicates(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let (s, key) = try stream(envelope, algorithm)
        var lines = s.records.map(\.bytes)
        lines.insert(lines[2], at: 3)
        lines.append(lines[2])
        let report = verifyLines(lines, keys: [key.publicKey])
        #expect(report.streams[0].duplicates == [3, 3])
        #expect(report.streams[0].reordered.isEmpty, "a late duplicate is a duplicate, not reordering")
        #expect(report.streams[0].verified == 10)
        #expect(!report.passed)
    }

    @Test func aDuplicateSignedTwiceWithES256IsStillADuplicate() throws {
        // ECDSA signatures differ each time; the chain hash covers the payload only, so this is no fork.
        let key = SigningKey.generate(.es256)
        var s = try StreamBuilder(key: key, envelope: .ocmf)
        let position = s.position
        let first = try s.next()
        s.position = position
        s.importTotal -= 250_000
        s.startMillis -= 900_000
        let again = try s.next()
        #expect(first.bytes != again.bytes)
        let report = verifyLines([first.bytes, again.bytes], keys: [key.publicKey])
        #expect(report.streams[0].duplicates == [1])
        #expect(report.streams[0].forks.isEmpty)
    }

    @Test func aDeliveryLogMayTolerateDuplicatesAndReorderingButNotGaps() throws {
        let (s, key) = try stream(.jws, .eddsa)
        var lines = s.records.map(\.bytes)
        lines.swapAt(2, 3)
        lines.append(lines[0])
        let verifier = RecordVerifier(keys: KeySet([key.publicKey]))
        var tolerant = ChainAnalyzer(toleratesRedelivery: true)
        for (i, line) in lines.enumerated() { tolerant.add(verifier.verify(line), line: i + 1) }
        let report = tolerant.report()
        #expect(report.passed, "\(report.text)")
        #expect(report.streams[0].duplicates == [1])
        #expect(report.streams[0].reordered == [3])
        #expect(report.text.contains("duplicates: 1"))
        var withGap = ChainAnalyzer(toleratesRedelivery: true)
        for (i, line) in lines.enumerated() where i != 5 { withGap.add(verifier.verify(line), line: i + 1) }
        #expect(!withGap.report().passed)
    }

    @Test(arguments: envelopes)
    func twoDifferentRecordsWithOneSeqAreAFork(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let (s, key) = try stream(envelope, algorithm, count: 5)
        // The gateway (or someone with its key) signs a second, different record for seq 3.
        var other = s
        other.position = StreamPosition(epoch: "E1", seq: 3, prev: s.records[1].hash)
        other.importTotal = 9_999_999_999
        let forked = try other.next()
        var lines = s.records.map(\.bytes)
        lines.append(forked.bytes)
        let report = verifyLines(lines, keys: [key.publicKey])
        #expect(report.streams[0].forks == [3])
        #expect(!report.passed)
        #expect(report.text.contains("forks (different records with one seq): 3"))
    }

    @Test(arguments: envelopes)
    func outOfOrderRecordsAreReordering(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let (s, key) = try stream(envelope, algorithm)
        var lines = s.records.map(\.bytes)
        lines.swapAt(4, 7)   // seq 8 arrives before 5; 5 arrives after 8, 6 and 7 after 8 as well
        let report = verifyLines(lines, keys: [key.publicKey])
        #expect(report.streams[0].reordered == [6, 7, 5])
        #expect(report.streams[0].gaps.isEmpty)
        #expect(report.streams[0].brokenLinks.isEmpty, "reordering alone does not break the chain")
        #expect(!report.passed)
    }

    @Test(arguments: envelopes)
    func aTamperedRecordIsReportedWithItsLine(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let (s, key) = try stream(envelope, algorithm)
        var lines = s.records.map(\.bytes)
        let text = String(decoding: lines[6], as: UTF8.self)
        let changed: String
        if envelope == .ocmf {
            changed = text.replacingOccurrences(of: "\"samples\":900", with: "\"samples\":901")
        } else {
            let parts = text.split(separator: ".").map(String.init)
            let payload = String(decoding: Base64URL.decode(parts[1])!, as: UTF8.self).replacingOccurrences(of: "\"samples\":900", with: "\"samples\":901")
            changed = [parts[0], Base64URL.encode(Array(payload.utf8)), parts[2]].joined(separator: ".")
        }
        #expect(changed != text)
        lines[6] = Array(changed.utf8)
        let report = verifyLines(lines, keys: [key.publicKey])
        let stream = report.streams[0]
        #expect(stream.tampered.map(\.line) == [7])
        #expect(stream.tampered.first?.seq == 7)
        #expect(stream.gaps == [7...7], "a record that does not verify is not counted as present")
        #expect(stream.verified == 9)
        #expect(!report.passed)
    }

    @Test func aRecordWhosePrevIsNotItsPredecessorBreaksTheChain() throws {
        let (s, key) = try stream(.jws, .eddsa, count: 4)
        var other = s
        other.position = StreamPosition(epoch: "E1", seq: 5, prev: s.records[1].hash)   // links to seq 2, not 4
        let spliced = try other.next()
        var zeroPrev = try StreamBuilder(key: key, epoch: "E2")
        zeroPrev.position = StreamPosition(epoch: "E2", seq: 1, prev: s.records[0].hash)
        let badFirst = try zeroPrev.next()
        let report = verifyLines(s.records.map(\.bytes) + [spliced.bytes, badFirst.bytes], keys: [key.publicKey])
        #expect(report.streams.count == 2)
        #expect(report.streams[0].brokenLinks == [5])
        #expect(report.streams[1].brokenLinks == [1], "seq 1 must have a zero prev")
        #expect(!report.passed)
    }

    @Test func unknownKeysAreReportedPerStream() throws {
        let (s, _) = try stream(.jws, .eddsa, count: 3)
        let report = verifyLines(s.records.map(\.bytes), keys: [SigningKey.generate(.eddsa).publicKey])
        #expect(report.streams[0].unknownKey.map(\.line) == [1, 2, 3])
        #expect(report.streams[0].verified == 0)
        #expect(!report.passed)
    }

    @Test func rotationToANewKeyIsANewSegmentAndOldKeysStillVerify() throws {
        let old = SigningKey.generate(.eddsa), new = SigningKey.generate(.es256)
        var s = try StreamBuilder(key: old)
        try s.next(3)
        try s.rotate(to: new)
        try s.next(3)
        let lines = s.records.map(\.bytes)
        let report = verifyLines(lines, keys: [new.publicKey, old.publicKey])
        #expect(report.passed, "\(report.text)")
        #expect(report.streams[0].keyRotations == [4])
        // Without the old public key the old segment cannot be verified.
        #expect(verifyLines(lines, keys: [new.publicKey]).streams[0].unknownKey.count == 3)
        // The key-set document carries both keys, and reads back.
        let document = KeySet([new.publicKey, old.publicKey]).document
        #expect(verifyLines(lines, keys: try KeySet.parse(document, source: "keys topic").keys).passed)
    }

    @Test func aKeyChangeThatDoesNotNameThePreviousKeyIsReported() throws {
        let old = SigningKey.generate(.eddsa), new = SigningKey.generate(.eddsa)
        var s = try StreamBuilder(key: old)
        try s.next(2)
        try s.rotate(to: new)
        s.position.previousKeyID = nil   // an outbox that forgot the previous key id
        try s.next(2)
        let report = verifyLines(s.records.map(\.bytes), keys: [old.publicKey, new.publicKey])
        #expect(report.streams[0].keyProblems == [3])
        #expect(!report.passed)
    }

    @Test func streamsAreSeparatedByMeterAndEpoch() throws {
        let key = SigningKey.generate(.eddsa)
        var a = try StreamBuilder(key: key, meter: "a")
        var b = try StreamBuilder(key: key, meter: "b")
        var a2 = try StreamBuilder(key: key, meter: "a", epoch: "E2")
        var lines: [[UInt8]] = []
        for _ in 0..<3 {
            lines.append(try a.next().bytes)
            lines.append(try b.next().bytes)
            lines.append(try a2.next().bytes)
        }
        let report = verifyLines(lines, keys: [key.publicKey], fromStart: true)
        #expect(report.passed, "\(report.text)")
        #expect(report.streams.map(\.stream.description) == ["gw-1/a epoch E1", "gw-1/a epoch E2", "gw-1/b epoch E1"])
    }

    @Test func malformedLinesBelongToNoStream() throws {
        let (s, key) = try stream(.jws, .eddsa, count: 2)
        let lines = [s.records[0].bytes, Array("hello".utf8), Array("OCMF|{}|{}".utf8), s.records[1].bytes]
        let report = verifyLines(lines, keys: [key.publicKey])
        #expect(report.malformed.map(\.line) == [2, 3])
        #expect(report.streams[0].passed)
        #expect(!report.passed)
    }
}
