import Foundation
import MeterCore
import Signing
import TestSupport
import Testing

/// The fixed-key test vectors in docs/test-vectors: how they are made, and who verifies them.
///
/// To write them anew (after a schema change): `METERGATE_WRITE_VECTORS=1 swift test --filter VectorTests`.
enum TestVectors {
    static let directory = "\(repositoryRoot)/docs/test-vectors"
    static let good = ["jws-eddsa.txt", "jws-es256.txt", "ocmf-es256.txt", "rotation-jws.txt"]

    static func key(_ name: String) throws -> SigningKey {
        try SigningKey(pem: String(contentsOfFile: "\(directory)/\(name).private.pem", encoding: .utf8))
    }

    static func stream(meter: String, source: String, kind: SourceKind = .modbus, key: SigningKey, envelope: RecordEnvelope, count: Int) throws -> StreamBuilder {
        var s = try StreamBuilder(key: key, envelope: envelope, meter: meter, epoch: "vector-epoch-1", sourceID: source)
        s.sourceKind = kind
        s.signer = try RecordSigner(gateway: try GatewayID(validating: "vector-gw"), meter: try MeterID(validating: meter), sourceID: source,
                                    envelope: envelope, key: key, ocmf: OCMFOptions(gatewayVersion: "1.0.0", timeStatus: .synchronized))
        try s.next(count)
        return s
    }

    /// File name → contents, all derived from the two fixed keys and fixed inputs.
    static func generate() throws -> [String: String] {
        let ed = try key("ed25519"), p256 = try key("p256")
        func lines(_ s: StreamBuilder) -> [String] { s.records.map(\.text) }
        func file(_ lines: [String]) -> String { lines.joined(separator: "\n") + "\n" }
        let eddsa = lines(try stream(meter: "meter-a", source: "SDM630-0000001", key: ed, envelope: .jws, count: 3))
        let es256 = lines(try stream(meter: "meter-b", source: "GPU-6f1c1a9e-0000-4000-8000-000000000001", kind: .gpu, key: p256, envelope: .jws, count: 3))
        let ocmf = lines(try stream(meter: "meter-c", source: "EM-3000-0000042", key: p256, envelope: .ocmf, count: 3))
        var rotation = try stream(meter: "meter-d", source: "S0-input-1", kind: .pulse, key: ed, envelope: .jws, count: 2)
        try rotation.rotate(to: p256)
        try rotation.next(2)

        var tamperedJWS = eddsa
        let parts = tamperedJWS[1].split(separator: ".").map(String.init)
        let payload = String(decoding: Base64URL.decode(parts[1])!, as: UTF8.self)
            .replacingOccurrences(of: "\"import_mwh\":250000", with: "\"import_mwh\":350000")
        tamperedJWS[1] = [parts[0], Base64URL.encode(Array(payload.utf8)), parts[2]].joined(separator: ".")
        var tamperedOCMF = ocmf
        tamperedOCMF[1] = tamperedOCMF[1].replacingOccurrences(of: "\"RV\":1235.060000", with: "\"RV\":1236.060000")

        return [
            "keys.jwks.json": KeySet([ed.publicKey, p256.publicKey]).document + "\n",
            "jws-eddsa.txt": file(eddsa),
            "jws-es256.txt": file(es256),
            "ocmf-es256.txt": file(ocmf),
            "rotation-jws.txt": file(lines(rotation)),
            "bad-tampered-jws.txt": file(tamperedJWS),
            "bad-tampered-ocmf.txt": file(tamperedOCMF),
            "bad-gap-ocmf.txt": file([ocmf[0], ocmf[2]]),
        ]
    }

    static func committed(_ name: String) throws -> String {
        try String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8)
    }

    /// What a signature covers: JWS header.payload, or the OCMF payload section.
    static func signedPart(_ line: some StringProtocol) -> String {
        if line.hasPrefix("OCMF|") { return String(line.split(separator: "|", omittingEmptySubsequences: false)[1]) }
        return line.split(separator: ".").prefix(2).joined(separator: ".")
    }
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct VectorTests {
    @Test func theSignerReproducesTheCommittedVectors() throws {
        let generated = try TestVectors.generate()
        if ProcessInfo.processInfo.environment["METERGATE_WRITE_VECTORS"] == "1" {
            for (name, contents) in generated {
                try contents.write(toFile: "\(TestVectors.directory)/\(name)", atomically: true, encoding: .utf8)
            }
            return
        }
        let keys = try KeySet.load(path: "\(TestVectors.directory)/keys.jwks.json")
        for name in generated.keys.sorted() where !name.hasPrefix("bad-") {
            let committed = try TestVectors.committed(name).split(separator: "\n")
            let fresh = generated[name]!.split(separator: "\n")
            #expect(committed.count == fresh.count, "\(name)")
            for (old, new) in zip(committed, fresh) {
                // Ed25519 is deterministic: byte for byte. ECDSA is randomised: the signed part must match,
                // and the committed signature must verify.
                #expect(TestVectors.signedPart(old) == TestVectors.signedPart(new), "\(name)")
                if name == "jws-eddsa.txt" || name == "keys.jwks.json" { #expect(old == new, "\(name)") }
                if name.hasSuffix(".txt") { #expect((try? RecordVerifier(keys: keys).verify(Array(old.utf8)).get()) != nil, "\(name): \(old)") }
            }
        }
        // The bad vectors are the good ones with one change each.
        let ocmf = try TestVectors.committed("ocmf-es256.txt").split(separator: "\n")
        #expect(try TestVectors.committed("bad-gap-ocmf.txt").split(separator: "\n") == [ocmf[0], ocmf[2]])
    }

    @Test(arguments: TestVectors.good)
    func metergateVerifyAcceptsTheGoodVectors(_ name: String) throws {
        let r = try runProcess(try metergateBinary(), ["verify", "--key", "\(TestVectors.directory)/keys.jwks.json", "\(TestVectors.directory)/\(name)"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("result: OK"))
    }

    @Test func metergateVerifyTakesEveryKeyForm() throws {
        let dir = TestVectors.directory
        for keyArguments in [["--key", "\(dir)/p256.spki.hex"], ["--key", "\(dir)/p256.public.pem"], ["--key", "\(dir)/p256.private.pem"]] {
            let r = try runProcess(try metergateBinary(), ["verify"] + keyArguments + ["\(dir)/ocmf-es256.txt"])
            #expect(r.status == 0, "\(keyArguments): \(r.stdout)\(r.stderr)")
        }
        // Rotation needs both keys: two PEM files, or the key set.
        let both = try runProcess(try metergateBinary(), ["verify", "--key", "\(dir)/ed25519.public.pem", "--key", "\(dir)/p256.public.pem", "\(dir)/rotation-jws.txt"])
        #expect(both.status == 0, "\(both.stdout)\(both.stderr)")
        #expect(both.stdout.contains("key rotations (new chain segment): 3"))
        // Several keys in one file: PEM blocks, or JWKs one per line.
        let tmp = TemporaryDirectory()
        defer { tmp.cleanup() }
        let pems = tmp.write("both.pem", try TestVectors.committed("ed25519.public.pem") + TestVectors.committed("p256.private.pem"))
        let jwkLines = tmp.write("both.jwk", try [TestVectors.key("p256"), TestVectors.key("ed25519")].map(\.publicKey.jwkJSON).joined(separator: "\n"))
        for file in [pems, jwkLines] {
            let r = try runProcess(try metergateBinary(), ["verify", "--key", file, "\(dir)/rotation-jws.txt"])
            #expect(r.status == 0, "\(file): \(r.stdout)\(r.stderr)")
        }
        // keygen --key-set prints the key set document the gateway publishes; verify reads it back.
        let set = try runProcess(try metergateBinary(), ["keygen", "--key-set", "\(dir)/p256.private.pem", "\(dir)/ed25519.public.pem"])
        #expect(set.status == 0, "\(set.stderr)")
        #expect(set.stdout == KeySet([try TestVectors.key("p256").publicKey, try TestVectors.key("ed25519").publicKey]).document + "\n")
        let mixed = try runProcess(try metergateBinary(), ["keygen", "--show", "\(dir)/p256.private.pem", "--key-set", "\(dir)/ed25519.public.pem"])
        #expect(mixed.status == 2)
        #expect(mixed.stderr.contains("cannot be combined"))
        let parsed = try KeySet.parse(set.stdout, source: "keygen --key-set")
        #expect(parsed.keys.map(\.keyID) == [try TestVectors.key("p256").publicKey.keyID, try TestVectors.key("ed25519").publicKey.keyID])
        let fromSet = try runProcess(try metergateBinary(), ["verify", "--key", tmp.write("set.json", set.stdout), "\(dir)/rotation-jws.txt"])
        #expect(fromSet.status == 0, "\(fromSet.stdout)")
        let one = try runProcess(try metergateBinary(), ["verify", "--key", "\(dir)/ed25519.public.pem", "\(dir)/rotation-jws.txt"])
        #expect(one.status == 1)
        #expect(one.stdout.contains("unknown key: 2"))
    }

    @Test func metergateVerifyFailsTheBadVectors() throws {
        let dir = TestVectors.directory
        let keys = "\(dir)/keys.jwks.json"
        let jws = try runProcess(try metergateBinary(), ["verify", "--key", keys, "\(dir)/bad-tampered-jws.txt"])
        #expect(jws.status == 1)
        #expect(jws.stdout.contains("tampered: 1"))
        #expect(jws.stdout.contains("line 2 (seq 2): JWS signature does not verify"))
        let ocmf = try runProcess(try metergateBinary(), ["verify", "--key", keys, "\(dir)/bad-tampered-ocmf.txt"])
        #expect(ocmf.status == 1)
        #expect(ocmf.stdout.contains("line 2 (seq 2): OCMF signature does not verify"))
        let gap = try runProcess(try metergateBinary(), ["verify", "--key", keys, "\(dir)/bad-gap-ocmf.txt"])
        #expect(gap.status == 1)
        #expect(gap.stdout.contains("gaps (missing seq): 2"))
    }

    @Test(arguments: ["jws-eddsa.txt", "jws-es256.txt", "rotation-jws.txt"])
    func jwcryptoVerifiesTheJWSVectors(_ name: String) throws {
        let peer = try runPeer("jws", keyFile: "\(TestVectors.directory)/keys.jwks.json", records: "\(TestVectors.directory)/\(name)")
        #expect(peer.status == 0, "\(peer.lines)")
        #expect(peer.lines.count == (name == "rotation-jws.txt" ? 4 : 3))
    }

    @Test func pyocmfVerifiesTheOCMFVectors() throws {
        let peer = try runPeer("ocmf", keyFile: "\(TestVectors.directory)/p256.spki.hex", records: "\(TestVectors.directory)/ocmf-es256.txt")
        #expect(peer.status == 0, "\(peer.lines)")
        #expect(peer.lines.count == 3)
    }

    @Test func thePeersRejectTheTamperedVectors() throws {
        let jws = try runPeer("jws", keyFile: "\(TestVectors.directory)/keys.jwks.json", records: "\(TestVectors.directory)/bad-tampered-jws.txt")
        #expect(jws.status == 1)
        #expect(jws.lines.map { $0.contains(" ok ") } == [true, false, true], "\(jws.lines)")
        let ocmf = try runPeer("ocmf", keyFile: "\(TestVectors.directory)/p256.spki.hex", records: "\(TestVectors.directory)/bad-tampered-ocmf.txt")
        #expect(ocmf.status == 1)
        #expect(ocmf.lines.map { $0.contains(" ok ") } == [true, false, true], "\(ocmf.lines)")
    }
}
