import Foundation
import MeterCore
import Signing
import TestSupport
import Testing

/// `metergate tail` on a real broker: the record stating the gateway's loss shows the statement on its line,
/// and the gap it explains is not reported as one.
@Suite struct TailStoreLostTests {
    @Test func tailShowsTheStatementAndAcceptsTheGapItExplains() throws {
        let key = SigningKey.generate(.eddsa)
        var s = try StreamBuilder(key: key)
        try s.next(10)
        try s.nextStatingLoss(6...10)
        try s.next()
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
