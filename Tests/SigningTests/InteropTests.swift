import Foundation
import MeterCore
import Signing
import TestSupport
import Testing

/// The venv python with jwcrypto and pyocmf (scripts/setup.sh installs them).
func peerPython() throws -> String {
    let python = "\(repositoryRoot)/.venv/bin/python"
    guard FileManager.default.isExecutableFile(atPath: python) else {
        throw TestEnvironmentError("\(python) is missing: run `bash scripts/setup.sh` (installs jwcrypto and pyocmf)")
    }
    return python
}

let peerScript = "\(repositoryRoot)/docs/test-vectors/peer_verify.py"

/// Runs docs/test-vectors/peer_verify.py and returns its per-line verdicts.
func runPeer(_ kind: String, keyFile: String, records: String) throws -> (status: Int32, lines: [String]) {
    let r = try runProcess(try peerPython(), [peerScript, kind, keyFile, records])
    #expect(r.stderr.isEmpty, "\(r.stderr)")
    return (r.status, r.stdout.split(separator: "\n").map(String.init))
}

/// Code nobody at MeterGate wrote checks what MeterGate signs: jwcrypto for JWS, pyocmf (strict) for OCMF.
@Suite(.timeLimit(.minutes(5))) struct InteropTests {
    @Test(arguments: [SigningAlgorithm.eddsa, .es256])
    func jwcryptoVerifiesOurJWSWithThePublishedKeySet(_ algorithm: SigningAlgorithm) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let key = SigningKey.generate(algorithm)
        var stream = try StreamBuilder(key: key)
        try stream.next(5)
        let keys = dir.write("keys.json", KeySet([key.publicKey]).document)
        let records = dir.write("records.txt", stream.records.map(\.text).joined(separator: "\n") + "\n")
        let peer = try runPeer("jws", keyFile: keys, records: records)
        #expect(peer.status == 0, "\(peer.lines)")
        #expect(peer.lines.count == 5)
        // The peer's SHA-256 of each payload is our chain hash.
        for (line, record) in zip(peer.lines, stream.records) {
            #expect(line.hasSuffix("sha256=\(record.hash.hexString)"), "\(line)")
        }
    }

    @Test(arguments: [SigningAlgorithm.eddsa, .es256])
    func jwcryptoRejectsATamperedJWS(_ algorithm: SigningAlgorithm) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let key = SigningKey.generate(algorithm)
        var stream = try StreamBuilder(key: key)
        try stream.next(3)
        var lines = stream.records.map(\.text)
        let parts = lines[1].split(separator: ".").map(String.init)
        let payload = String(decoding: Base64URL.decode(parts[1])!, as: UTF8.self)
            .replacingOccurrences(of: "\"import_mwh\":250000", with: "\"import_mwh\":250001")
        lines[1] = [parts[0], Base64URL.encode(Array(payload.utf8)), parts[2]].joined(separator: ".")
        let peer = try runPeer("jws", keyFile: dir.write("keys.json", KeySet([key.publicKey]).document),
                               records: dir.write("records.txt", lines.joined(separator: "\n")))
        #expect(peer.status == 1)
        #expect(peer.lines[0].hasPrefix("line 1 ok"))
        #expect(peer.lines[1].hasPrefix("line 2 FAIL InvalidJWSSignature"), "\(peer.lines)")
    }

    @Test func pyocmfVerifiesOurOCMFInStrictModeWithTheSPKIKey() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let key = SigningKey.generate(.es256)
        var stream = try StreamBuilder(key: key, envelope: .ocmf)
        try stream.next(5)
        let spki = dir.write("key.hex", key.publicKey.spkiDER.hexString + "\n")
        let records = dir.write("records.txt", stream.records.map(\.text).joined(separator: "\n") + "\n")
        let peer = try runPeer("ocmf", keyFile: spki, records: records)
        #expect(peer.status == 0, "\(peer.lines)")
        for (line, record) in zip(peer.lines, stream.records) {
            #expect(line.hasSuffix("sha256=\(record.hash.hexString)"), "\(line)")
        }
    }

    @Test func pyocmfRejectsATamperedOCMFRecordAndAnotherKey() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let key = SigningKey.generate(.es256)
        var stream = try StreamBuilder(key: key, envelope: .ocmf)
        try stream.next(3)
        var lines = stream.records.map(\.text)
        lines[2] = lines[2].replacingOccurrences(of: "\"RV\":1235.310000", with: "\"RV\":1235.320000")
        #expect(lines[2] != stream.records[2].text)
        let records = dir.write("records.txt", lines.joined(separator: "\n"))
        let peer = try runPeer("ocmf", keyFile: dir.write("key.hex", key.publicKey.spkiDER.hexString), records: records)
        #expect(peer.status == 1)
        #expect(peer.lines.map { $0.contains(" ok ") } == [true, true, false], "\(peer.lines)")
        let other = try runPeer("ocmf", keyFile: dir.write("other.hex", SigningKey.generate(.es256).publicKey.spkiDER.hexString),
                                records: dir.write("good.txt", stream.records.map(\.text).joined(separator: "\n")))
        #expect(other.status == 1)
        #expect(other.lines.allSatisfy { $0.contains("FAIL") })
    }

    @Test func theKeySetDocumentIsAStandardJWKSet() throws {
        // jwcrypto imports the document and computes the same RFC 7638 thumbprints we use as kid.
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let keys = KeySet([SigningKey.generate(.eddsa).publicKey, SigningKey.generate(.es256).publicKey])
        let path = dir.write("keys.json", keys.document)
        let script = """
            import sys
            from jwcrypto import jwk
            for k in jwk.JWKSet.from_json(open(sys.argv[1]).read())["keys"]:
                print(k.get("kid"), k.thumbprint())
            """
        let r = try runProcess(try peerPython(), ["-c", script, path])
        #expect(r.status == 0, "\(r.stderr)")
        let pairs = r.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(Set(pairs.map { $0[0] }) == Set(keys.keys.map(\.keyID)))   // jwcrypto keeps keys in a set
        #expect(pairs.allSatisfy { $0.count == 2 && $0[0] == $0[1] })
    }
}
