import Foundation
import MeterCore
import Signing
import TestSupport
import Testing

/// A gateway whose store lost published records states the lost seqs, signed (`store_lost`), on the next
/// record. The verifier reports a gap that statement covers as stated lost, not as a failure.
@Suite(.timeLimit(.minutes(5))) struct StoreLostTests {
    static let envelopes: [(RecordEnvelope, SigningAlgorithm)] = [(.jws, .eddsa), (.ocmf, .es256)]

    /// Seqs 1…10 published, the store lost 6…10, seq 11 states it, then 12.
    func recovered(_ envelope: RecordEnvelope = .jws, _ algorithm: SigningAlgorithm = .eddsa, lost: ClosedRange<UInt64> = 6...10) throws -> (StreamBuilder, SigningKey) {
        let key = SigningKey.generate(algorithm)
        var s = try StreamBuilder(key: key, envelope: envelope)
        try s.next(10)
        try s.nextStatingLoss(lost)
        try s.next()
        return (s, key)
    }

    /// The records of `s` except the seqs in `dropped`.
    func lines(_ s: StreamBuilder, without dropped: [ClosedRange<UInt64>]) -> [[UInt8]] {
        s.records.filter { r in !dropped.contains { $0.contains(r.record.seq) } }.map(\.bytes)
    }

    @Test(arguments: envelopes)
    func aGapTheGatewayStatesLostPassesAsStated(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let (s, key) = try recovered(envelope, algorithm)
        #expect(s.records[10].record.storeLost == StoreLoss(seqs: 6...10, cause: .damage))
        let report = verifyLines(lines(s, without: [6...10]), keys: [key.publicKey], fromStart: true)
        let stream = try #require(report.streams.first)
        #expect(report.passed, "\(report.text)")
        #expect(stream.gaps.isEmpty)
        #expect(stream.statedLost == [6...10])
        #expect(stream.statedLostReceived.isEmpty)
        #expect(stream.lossStatements == [LossStatement(statedBy: 11, seqs: 6...10)])
        #expect(stream.brokenLinks.isEmpty, "the link from 11 to the missing seq 10 cannot be checked, and is not called broken")
        #expect(report.text.contains("stated lost by the gateway (signed store_lost, not a failure): seqs 6…10"), "\(report.text)")
        #expect(report.text.contains("seq 11 states the gateway's store lost seqs 6…10"), "\(report.text)")
        #expect(report.json.contains("\"stated_lost\":[[6,10]]"), "\(report.json)")
        #expect(report.json.contains("\"loss_statements\":[{\"seq\":11,\"from_seq\":6,\"to_seq\":10,\"cause\":\"damage\"}]"), "\(report.json)")
    }

    /// The quota policy dropped unsent 3…5 (never published) while 6 waited too; 7, the next record signed,
    /// states the drop with its cause.
    @Test(arguments: envelopes)
    func aQuotaDropStatedByTheNextRecordPassesAsStated(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let key = SigningKey.generate(algorithm)
        var s = try StreamBuilder(key: key, envelope: envelope)
        try s.next(6)
        s.position.storeLost = StoreLoss(seqs: 3...5, cause: .quota)
        let stating = try s.next()
        try s.next()
        #expect(String(decoding: stating.record.canonicalBytes, as: UTF8.self).contains("\"store_lost\":{\"cause\":\"quota\",\"from_seq\":3,\"to_seq\":5}"))
        let report = verifyLines(lines(s, without: [3...5]), keys: [key.publicKey], fromStart: true)
        let stream = try #require(report.streams.first)
        #expect(report.passed, "\(report.text)")
        #expect(stream.gaps.isEmpty)
        #expect(stream.statedLost == [3...5])
        #expect(stream.lossStatements == [LossStatement(statedBy: 7, seqs: 3...5, cause: .quota)])
        #expect(stream.brokenLinks.isEmpty)
        #expect(report.text.contains("seq 7 states the gateway's quota policy dropped unsent seqs 3…5"), "\(report.text)")
        #expect(report.json.contains("{\"seq\":7,\"from_seq\":3,\"to_seq\":5,\"cause\":\"quota\"}"), "\(report.json)")
        // Without the statement the same gap fails.
        let unstated = verifyLines(lines(s, without: [3...5, 7...7]), keys: [key.publicKey], fromStart: true)
        #expect(!unstated.passed)
        #expect(unstated.streams.first?.gaps == [3...5, 7...7])
    }

    @Test func aGapNoStatementCoversStillFails() throws {
        let (s, key) = try recovered()
        let report = verifyLines(lines(s, without: [3...4, 6...10]), keys: [key.publicKey])
        #expect(!report.passed)
        #expect(report.streams[0].gaps == [3...4])
        #expect(report.streams[0].statedLost == [6...10])
        #expect(report.text.contains("gaps (missing seq): 3…4"))
    }

    @Test func aGapAStatementCoversInPartFailsForTheRest() throws {
        // The store lost 8…10, but the receiver also misses 5…7 (published, never delivered, still replayable).
        let (s, key) = try recovered(lost: 8...10)
        let report = verifyLines(lines(s, without: [5...10]), keys: [key.publicKey])
        #expect(!report.passed)
        #expect(report.streams[0].gaps == [5...7])
        #expect(report.streams[0].statedLost == [8...10])
        // A statement reaching past the gap on both sides covers only what is missing.
        let (wide, wideKey) = try recovered(lost: 4...10)
        let inner = verifyLines(lines(wide, without: [6...8]), keys: [wideKey.publicKey])
        #expect(inner.passed, "\(inner.text)")
        #expect(inner.streams[0].statedLost == [6...8])
        #expect(inner.streams[0].statedLostReceived == [4...5, 9...10])
    }

    @Test func statedSeqsTheReceiverHoldsAreReportedAndLinkNormally() throws {
        let (s, key) = try recovered()
        let all = verifyLines(lines(s, without: []), keys: [key.publicKey], fromStart: true)
        #expect(all.passed, "\(all.text)")
        #expect(all.streams[0].statedLost.isEmpty)
        #expect(all.streams[0].statedLostReceived == [6...10])
        #expect(all.streams[0].brokenLinks.isEmpty, "seq 11's prev is the hash of seq 10, the last record handed out")
        #expect(all.text.contains("stated lost but received (published before the store lost them): seqs 6…10"), "\(all.text)")
        let some = verifyLines(lines(s, without: [8...10]), keys: [key.publicKey])
        #expect(some.passed, "\(some.text)")
        #expect(some.streams[0].statedLost == [8...10])
        #expect(some.streams[0].statedLostReceived == [6...7])
    }

    @Test func aLostHeadIsStatedWhenTheInputStartsAtTheEpochStart() throws {
        let key = SigningKey.generate(.eddsa)
        var s = try StreamBuilder(key: key)
        try s.next(3)
        try s.nextStatingLoss(1...3)
        try s.next()
        let report = verifyLines(lines(s, without: [1...3]), keys: [key.publicKey], fromStart: true)
        #expect(report.passed, "\(report.text)")
        #expect(report.streams[0].statedLost == [1...3])
    }

    @Test func aStatementWhoseRecordDoesNotLinkExplainsNothing() throws {
        let key = SigningKey.generate(.eddsa)
        var s = try StreamBuilder(key: key)
        try s.next(10)
        // Seq 11 states 6…9 lost but its prev is not the hash of seq 10, which the receiver holds.
        s.position.prev = s.records[8].hash
        try s.nextStatingLoss(6...9)
        let report = verifyLines(lines(s, without: [6...9]), keys: [key.publicKey])
        #expect(!report.passed)
        #expect(report.streams[0].brokenLinks == [11])
        #expect(report.streams[0].gaps == [6...9])
        #expect(report.streams[0].statedLost.isEmpty && report.streams[0].lossStatements.isEmpty)
    }

    @Test func aForkedStatementExplainsNothing() throws {
        let (s, key) = try recovered()
        // Another record signed for seq 11 without the statement: which one is true cannot be told.
        var other = s
        other.records = []
        other.position = StreamPosition(epoch: "E1", seq: 11, prev: s.records[9].hash)
        other.importTotal += 1
        let fork = try other.next()
        let report = verifyLines(lines(s, without: [6...10]) + [fork.bytes], keys: [key.publicKey])
        #expect(!report.passed)
        #expect(report.streams[0].forks == [11])
        #expect(report.streams[0].gaps == [6...10])
        #expect(report.streams[0].statedLost.isEmpty)
    }

    /// `metergate verify` on a real signed stream: the stated gap passes (exit 0) and is named in text and JSON;
    /// another gap in the same stream fails (exit 1).
    @Test func theVerifyCommandReportsAStatedGapAndPasses() throws {
        let (s, key) = try recovered(.ocmf, .es256)
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let jwk = dir.write("k.jwk", key.publicKey.jwkJSON)
        let text = { (seqs: [ClosedRange<UInt64>]) in
            s.records.filter { r in !seqs.contains { $0.contains(r.record.seq) } }.map(\.text).joined(separator: "\n") + "\n"
        }
        let stated = dir.write("stated.txt", text([6...10]))
        let plain = try runProcess(try metergateBinary(), ["verify", "--key", jwk, "--from-start", stated])
        #expect(plain.status == 0, "\(plain.stdout)\(plain.stderr)")
        #expect(plain.stdout.contains("stated lost by the gateway (signed store_lost, not a failure): seqs 6…10"), "\(plain.stdout)")
        #expect(plain.stdout.contains("result: OK"), "\(plain.stdout)")
        let json = try runProcess(try metergateBinary(), ["verify", "--key", jwk, "--json", "--from-start", stated])
        #expect(json.status == 0, "\(json.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let stream = try #require((report["streams"] as? [[String: Any]])?.first)
        #expect(report["passed"] as? Bool == true)
        #expect(stream["gaps"] as? [[Int]] == [])
        #expect(stream["stated_lost"] as? [[Int]] == [[6, 10]])
        #expect(stream["stated_lost_received"] as? [[Int]] == [])
        let statements = try #require(stream["loss_statements"] as? [[String: Any]])
        #expect(statements.count == 1)
        #expect(statements.first?["seq"] as? Int == 11 && statements.first?["from_seq"] as? Int == 6 && statements.first?["to_seq"] as? Int == 10)
        #expect(statements.first?["cause"] as? String == "damage")

        let uncovered = dir.write("uncovered.txt", text([2...2, 6...10]))
        let failing = try runProcess(try metergateBinary(), ["verify", "--key", jwk, "--json", uncovered])
        #expect(failing.status == 1, "\(failing.stderr)")
        let failed = try #require(try JSONSerialization.jsonObject(with: Data(failing.stdout.utf8)) as? [String: Any])
        let failedStream = try #require((failed["streams"] as? [[String: Any]])?.first)
        #expect(failedStream["gaps"] as? [[Int]] == [[2, 2]])
        #expect(failedStream["stated_lost"] as? [[Int]] == [[6, 10]])
    }

    /// `metergate tail` on a real broker: the record stating the loss shows the statement on its line, and
    /// the gap it explains is not reported as one.
    @Test func tailShowsTheStatementAndAcceptsTheGapItExplains() throws {
        let (s, key) = try recovered()
        let broker = try MosquittoBroker()
        let pub = try #require(which("mosquitto_pub"))
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let jwk = dir.write("k.jwk", key.publicKey.jwkJSON)
        let topic = "metergate/v1/gw-1/main/reading"
        let base = ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", topic]
        // Seq 1 retained: tail's line for it shows that its subscription is in place before the rest is sent.
        #expect(try runProcess(pub, base + ["-r", "-m", s.records[0].text]).status == 0)
        let tail = try BackgroundProcess(try metergateBinary(), ["tail", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--gateway", "gw-1",
                                                                 "--key", jwk, "--count", "7", "--timeout", "90"], logPath: dir.file("tail.txt"))
        defer { tail.stop() }
        #expect(waitUntil(timeout: 60) { tail.log.contains("seq 1 ") }, "tail: \(tail.log)")
        // Seqs 6…10 never arrive: the gateway's store lost them, and seq 11 says so.
        let rest = s.records.filter { !(6...10).contains($0.record.seq) && $0.record.seq > 1 }.map(\.text).joined(separator: "\n") + "\n"
        #expect(try runProcess(pub, base + ["-l"], stdin: rest).status == 0)
        #expect(waitUntil(timeout: 60) { !tail.isRunning }, "tail: \(tail.log)")
        #expect(tail.stop() == 0, "tail: \(tail.log)")
        let line = try #require(tail.log.split(separator: "\n").first { $0.contains("seq 11 ") }, "tail: \(tail.log)")
        #expect(line.contains("✓") && line.contains("store lost seq 6…10 (signed)"), "\(line)")
        #expect(!tail.log.contains("✗") && !tail.log.contains("gap"), "tail: \(tail.log)")
    }
}
