import Foundation
import MeterCore
import Signing
import TestSupport
import Testing

/// A key trusted for one gateway verifies that gateway only; a new key is trusted only through a rotation
/// statement signed by a key already trusted for the same gateway.
@Suite(.timeLimit(.minutes(5))) struct TrustStoreTests {
    let old = SigningKey.generate(.eddsa)
    let new = SigningKey.generate(.es256)
    let attacker = SigningKey.generate(.eddsa)

    func store(_ key: SigningKey, for gateway: String, notAfter: Int64? = nil) -> TrustStore {
        var store = TrustStore()
        store.add(TrustedKey(key: key.publicKey, notAfterMillis: notAfter, addedMillis: 1), gateway: gateway)
        return store
    }

    func record(_ key: SigningKey, gateway: String, startMillis: Int64 = 1_767_225_600_000) throws -> [UInt8] {
        let signer = try RecordSigner(gateway: try GatewayID(validating: gateway), meter: try MeterID(validating: "main"),
                                      sourceID: "src", envelope: .jws, key: key)
        let result = IntervalResult(meter: signer.meter, source: .modbus, startMillis: startMillis, endMillis: startMillis + 900_000,
                                    importTotal: MilliwattHours(5), exportTotal: .zero, importDelta: MilliwattHours(5), exportDelta: .zero,
                                    averagePowerWatts: 1, peakPowerWatts: 1, sampleCount: 1, quality: .measured)
        return try signer.sign(result: result, position: .first(epoch: "E")).bytes
    }

    @Test func aKeyTrustedForOneGatewayNeverVerifiesAnother() throws {
        let verifier = RecordVerifier(trust: store(old, for: "gw1"))
        #expect(throws: Never.self) { try verifier.verify(try record(old, gateway: "gw1")).get() }
        // A record published with a trailing newline (or CRLF) is the same record.
        #expect(throws: Never.self) { try verifier.verify(try record(old, gateway: "gw1") + Array("\r\n".utf8)).get() }
        guard case .failure(let failure) = verifier.verify(try record(old, gateway: "gw2")) else {
            Issue.record("gw2's record verified with gw1's key")
            return
        }
        #expect(failure.kind == .unknownKey)
        #expect(failure.description.contains("trusted for gateway gw1, not for gw2"), "\(failure)")
        guard case .failure(let unknown) = verifier.verify(try record(attacker, gateway: "gw1")) else {
            Issue.record("an untrusted key verified")
            return
        }
        #expect(unknown.description.contains("not trusted for gateway gw1"), "\(unknown)")
    }

    @Test func notAfterBoundsTheIntervalsAKeyVerifies() throws {
        let limit: Int64 = 1_767_225_600_000 + 900_000          // the first interval ends exactly then
        let verifier = RecordVerifier(trust: store(old, for: "gw1", notAfter: limit))
        #expect(throws: Never.self) { try verifier.verify(try record(old, gateway: "gw1")).get() }
        guard case .failure(let failure) = verifier.verify(try record(old, gateway: "gw1", startMillis: limit)) else {
            Issue.record("a record after the key's not-after verified")
            return
        }
        #expect(failure.description.contains("only for intervals ending by"), "\(failure)")
    }

    @Test func aSignedRotationIsFollowedAndAnythingElseIsNot() throws {
        let statement = try KeyRotationStatement.make(gateway: "gw1", from: old, to: new.publicKey, issuedMillis: 5)
        let forged = try KeyRotationStatement.make(gateway: "gw1", from: attacker, to: SigningKey.generate(.eddsa).publicKey, issuedMillis: 5)
        let elsewhere = try KeyRotationStatement.make(gateway: "gw2", from: old, to: SigningKey.generate(.eddsa).publicKey, issuedMillis: 5)
        var trust = store(old, for: "gw1")
        let announcement = KeysAnnouncement(keys: KeySet([new.publicKey, old.publicKey, attacker.publicKey]),
                                            rotations: [forged, elsewhere, statement])
        // The document round-trips, and stays a JWK Set any JOSE library reads.
        let parsed = try KeysAnnouncement.parse(announcement.document, source: "test")
        #expect(parsed.rotations.map(\.compact) == announcement.rotations.map(\.compact))
        #expect(try KeySet.parse(announcement.document, source: "test").keys.count == 3)

        let learned = trust.learn(from: parsed, gateway: "gw1", nowMillis: 9)
        #expect(learned.keys.map(\.key) == [new.publicKey])
        #expect(trust.trusted(keyID: new.publicKey.keyID, gateway: "gw1") != nil)
        #expect(trust.trusted(keyID: attacker.publicKey.keyID, gateway: "gw1") == nil)
        #expect(trust.gateways["gw2"] == nil)
        #expect(learned.ignored.contains { $0.contains("for gateway 'gw2'") }, "\(learned.ignored)")
        #expect(learned.ignored.contains { $0.contains("not trusted for gw1") }, "\(learned.ignored)")
        #expect(throws: Never.self) { try RecordVerifier(trust: trust).verify(try record(new, gateway: "gw1")).get() }
    }

    @Test func aStatementWhoseSignatureWasAlteredTeachesNothing() throws {
        let statement = try KeyRotationStatement.make(gateway: "gw1", from: old, to: new.publicKey, issuedMillis: 5)
        // The same signature over a payload naming the attacker's key: the header and signature kept, the payload swapped.
        let other = try KeyRotationStatement.make(gateway: "gw1", from: old, to: attacker.publicKey, issuedMillis: 5)
        let parts = statement.compact.split(separator: ".")
        let swapped = try KeyRotationStatement(compact: [parts[0], other.compact.split(separator: ".")[1], parts[2]].joined(separator: "."))
        var trust = store(old, for: "gw1")
        let learned = trust.learn(from: KeysAnnouncement(keys: KeySet(), rotations: [swapped]), gateway: "gw1", nowMillis: 9)
        #expect(learned.keys.isEmpty)
        #expect(learned.ignored.contains { $0.contains("does not verify") }, "\(learned.ignored)")
    }

    @Test func chainsOfRotationsAreFollowedInAnyOrder() throws {
        let third = SigningKey.generate(.eddsa)
        let first = try KeyRotationStatement.make(gateway: "gw1", from: old, to: new.publicKey, issuedMillis: 5)
        let second = try KeyRotationStatement.make(gateway: "gw1", from: new, to: third.publicKey, issuedMillis: 6)
        var trust = store(old, for: "gw1", notAfter: 1_000_000)
        let learned = trust.learn(from: KeysAnnouncement(keys: KeySet(), rotations: [second, first]), gateway: "gw1", nowMillis: 9)
        #expect(Set(learned.keys.map(\.key.keyID)) == [new.publicKey.keyID, third.publicKey.keyID])
        // A learned key inherits its signer's not-after.
        #expect(trust.trusted(keyID: third.publicKey.keyID, gateway: "gw1")?.notAfterMillis == 1_000_000)
    }

    @Test func theFileRoundTripsAndBadFilesSayWhatIsWrong() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        var trust = store(old, for: "gw1", notAfter: 1_798_761_600_000)
        let statement = try KeyRotationStatement.make(gateway: "gw1", from: old, to: new.publicKey, issuedMillis: 5)
        _ = trust.learn(from: KeysAnnouncement(keys: KeySet(), rotations: [statement]), gateway: "gw1", nowMillis: 1_767_225_600_000)
        let path = dir.file("trust.json")
        try trust.save(path: path)
        let loaded = try TrustStore.load(path: path)
        #expect(loaded.gateways["gw1"]?.map(\.key) == [old.publicKey, new.publicKey])
        #expect(loaded.gateways["gw1"]?.map(\.notAfterMillis) == [1_798_761_600_000, 1_798_761_600_000])
        #expect(loaded.gateways["gw1"]?.last?.origin == .rotation(statement))
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("\"not_after\":\"2027-01-01T00:00:00Z\""), "\(text)")

        for (contents, expected) in [("{}", "metergate_trust"), ("[1", "not JSON"),
                                     ("{\"metergate_trust\": 1, \"gateways\": {\"gw\": [{\"jwk\": {\"kty\": \"RSA\"}}]}}", "gateways.gw[0].jwk")] {
            let bad = dir.write("bad.json", contents)
            #expect(throws: TrustStoreError.self) { try TrustStore.load(path: bad) }
            do { _ = try TrustStore.load(path: bad) } catch { #expect(error.description.contains(expected), "\(error)") }
        }
        do { _ = try TrustStore.load(path: dir.file("missing.json")) } catch { #expect(error.description.contains("metergate trust add"), "\(error)") }
    }

    /// PyJWT, a JOSE library no other test uses, verifies the statement and follows it from the trusted key.
    @Test(arguments: [SigningAlgorithm.eddsa, .es256])
    func pyjwtVerifiesARotationStatement(_ algorithm: SigningAlgorithm) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let from = SigningKey.generate(algorithm)
        let to = SigningKey.generate(.eddsa)
        let statement = try KeyRotationStatement.make(gateway: "gw-9", from: from, to: to.publicKey, issuedMillis: 1_767_225_600_000)
        let document = dir.write("keys.json", KeysAnnouncement(keys: KeySet([to.publicKey, from.publicKey]), rotations: [statement]).document)
        let trusted = dir.write("trusted.jwk", from.publicKey.jwkJSON)
        let script = "\(repositoryRoot)/Tests/peers/rotation_check.py"
        let ok = try runProcess(try peerPython(), [script, document, trusted, "gw-9"])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        #expect(ok.stdout.contains(to.publicKey.keyID), "\(ok.stdout)")
        // The same document read for another gateway, or from an untrusted key, is refused by the peer too.
        let wrongGateway = try runProcess(try peerPython(), [script, document, trusted, "gw-8"])
        #expect(wrongGateway.status == 1 && wrongGateway.stdout.contains("not gw-8"), "\(wrongGateway.stdout)")
        let stranger = dir.write("stranger.jwk", SigningKey.generate(.eddsa).publicKey.jwkJSON)
        let untrusted = try runProcess(try peerPython(), [script, document, stranger, "gw-9"])
        #expect(untrusted.status == 1 && !untrusted.stdout.contains(to.publicKey.keyID), "\(untrusted.stdout)")
    }
}
