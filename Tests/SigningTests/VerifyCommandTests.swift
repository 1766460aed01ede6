import Foundation
import MeterCore
import Signing
import TestSupport
import Testing

/// `metergate verify` as a settlement operator runs it: real files, standard input, exit codes 0/1/2.
@Suite(.timeLimit(.minutes(5))) struct VerifyCommandTests {
    @Test func usageErrorsExitTwoAndSayWhatIsWrong() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let records = dir.write("r.txt", "")
        let noKey = try runProcess(try metergateBinary(), ["verify", records])
        #expect(noKey.status == 2)
        #expect(noKey.stderr.contains("verify needs to know which keys to trust: give --trust FILE"))
        let missingKey = try runProcess(try metergateBinary(), ["verify", "--key", dir.file("nope.jwk"), records])
        #expect(missingKey.status == 2)
        #expect(missingKey.stderr.contains("nope.jwk"))
        let badKey = try runProcess(try metergateBinary(), ["verify", "--key", dir.write("bad.jwk", "{\"kty\":\"RSA\"}"), records])
        #expect(badKey.status == 2)
        #expect(badKey.stderr.contains("neither OKP/Ed25519 nor EC/P-256"))
        let jwk = dir.write("k.jwk", SigningKey.generate(.eddsa).publicKey.jwkJSON)
        let missingInput = try runProcess(try metergateBinary(), ["verify", "--key", jwk, dir.file("none.txt")])
        #expect(missingInput.status == 2)
        #expect(missingInput.stderr.contains("cannot read \(dir.file("none.txt"))"))
    }

    @Test func readsStandardInputAndReportsJSON() throws {
        let key = SigningKey.generate(.es256)
        var a = try StreamBuilder(key: key, meter: "a")
        var b = try StreamBuilder(key: key, envelope: .ocmf, meter: "b")
        try a.next(4)
        try b.next(4)
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let jwk = dir.write("k.jwk", key.publicKey.jwkJSON)
        // Interleaved, one record of b missing, a blank line and CRLF endings tolerated.
        let lines = [a.records[0], b.records[0], a.records[1], b.records[1], a.records[2], b.records[3], a.records[3]].map(\.text)
        let input = lines.joined(separator: "\r\n") + "\n\n"
        let r = try runProcess(try metergateBinary(), ["verify", "--key", jwk, "--json", "-"], stdin: input)
        #expect(r.status == 1, "\(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(report["passed"] as? Bool == false)
        #expect(report["records"] as? Int == 7)
        let streams = try #require(report["streams"] as? [[String: Any]])
        #expect(streams.map { $0["meter"] as? String } == ["a", "b"])
        #expect(streams[0]["passed"] as? Bool == true)
        #expect(streams[1]["gaps"] as? [[Int]] == [[3, 3]])
        #expect(streams[1]["verified"] as? Int == 3)
    }

    @Test func aDeliveryLogWithARedeliveryFailsUnlessToleratedAsSuch() throws {
        let key = SigningKey.generate(.eddsa)
        var s = try StreamBuilder(key: key)
        try s.next(3)
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let jwk = dir.write("k.jwk", key.publicKey.jwkJSON)
        let log = dir.write("log.txt", [s.records[0], s.records[1], s.records[1], s.records[2]].map(\.text).joined(separator: "\n"))
        let strict = try runProcess(try metergateBinary(), ["verify", "--key", jwk, log])
        #expect(strict.status == 1)
        #expect(strict.stdout.contains("duplicates: 2"))
        let tolerant = try runProcess(try metergateBinary(), ["verify", "--key", jwk, "--tolerate-redelivery", log])
        #expect(tolerant.status == 0, "\(tolerant.stdout)")
        #expect(tolerant.stdout.contains("duplicates: 2"))
    }

    @Test func anEmptyInputIsAFailureNotASuccess() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let jwk = dir.write("k.jwk", SigningKey.generate(.eddsa).publicKey.jwkJSON)
        let r = try runProcess(try metergateBinary(), ["verify", "--key", jwk, dir.write("empty.txt", "")])
        #expect(r.status == 1)
        #expect(r.stdout.contains("no records"))
    }

    @Test func aLargeStreamVerifiesAcrossBatches() throws {
        // More records than one read batch (8192), so batching and line numbering across batches are exercised.
        let key = SigningKey.generate(.eddsa)
        var s = try StreamBuilder(key: key)
        try s.next(9000)
        var lines = s.records.map(\.text)
        lines.remove(at: 8500)
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.write("r.txt", lines.joined(separator: "\n"))   // no final newline
        let r = try runProcess(try metergateBinary(), ["verify", "--key", dir.write("k.jwk", key.publicKey.jwkJSON), path])
        #expect(r.status == 1)
        #expect(r.stdout.contains("FAIL, 8999 verified (seq 1…9000)"))
        #expect(r.stdout.contains("gaps (missing seq): 8501"))
        #expect(r.stdout.components(separatedBy: "\n").filter { $0.hasPrefix("  ") }.count == 1, "\(r.stdout)")
    }
}
