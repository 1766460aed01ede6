import Foundation
import Ledger
import MQTT
import MeterCore
import Signing
import Testing
import TestSupport

/// An attacker with nothing but publish rights on the broker, against the real `tail` and `ledger` binaries, a
/// real mosquitto and real signatures: a key announced on any keys topic is not trust.
@Suite(.serialized, .timeLimit(.minutes(5))) struct TrustAttackTests {
    let key = SigningKey.generate(.eddsa)
    let attacker = SigningKey.generate(.eddsa)

    /// A record for gw-1/main at `seq` that links to `after` (the real record before it), signed with `signer`.
    func forged(after: SignedRecord, signer: SigningKey, delta: Int64) throws -> SignedRecord {
        var stream = try SignedStream(key: signer)
        stream.position = StreamPosition(epoch: after.record.epoch, seq: after.record.seq + 1, prev: after.hash)
        stream.startMillis = after.record.endMillis
        stream.importTotal = after.record.importTotal.rawValue
        return try stream.next(delta: delta)
    }

    func trustStore(_ dir: TemporaryDirectory, _ key: SigningKey, gateway: String = "gw-1") throws -> String {
        let trust = dir.file("trust.json")
        let publicKey = dir.write("gw.pub.pem", key.publicKey.pemRepresentation)
        let added = try runProcess(try metergateBinary(), ["trust", "add", "--trust", trust, "--gateway", gateway, "--key", publicKey])
        #expect(added.status == 0 && added.stdout.contains("trusted: \(key.publicKey.keyID)"), "\(added.stdout)\(added.stderr)")
        return trust
    }

    @Test(.timeLimit(.minutes(2)))
    func aKeyAnnouncedOnTheBrokerForgesNothing() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let trust = try trustStore(dir, key)
        let publisher = try await Publisher(broker)
        // The attacker's key, retained under another gateway id and under gw-1's own keys topic (no rotation statement).
        for gateway in ["evil", "gw-1"] {
            _ = try publisher.client.publish(MQTTMessage(topic: "metergate/v1/\(gateway)/keys", payload: Array(KeySet([attacker.publicKey]).document.utf8),
                                                         qos: .atLeastOnce, retain: true))
        }
        let db = dir.file("ledger.db")
        let ledger = try BackgroundProcess(try metergateBinary(), [
            "ledger", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--db", db, "--trust", trust, "--no-backfill"], logPath: dir.file("ledger.log"))
        defer { _ = ledger.stop() }
        let tail = try BackgroundProcess(try metergateBinary(), [
            "tail", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--trust", trust, "--json", "--count", "11", "--timeout", "60"],
                                         logPath: dir.file("tail.log"))
        defer { _ = tail.stop() }
        #expect(await eventually { ledger.log.components(separatedBy: "subscribed").count >= 3 }, "\(ledger.log)")
        // Non-retained readings reach tail only once its subscription is in place.
        #expect(await eventually { tail.log.contains("listening on metergate/v1/+/+/reading") }, "\(tail.log)")

        var stream = try SignedStream(key: key)
        try stream.next(8)
        let fake = try forged(after: stream.records[7], signer: attacker, delta: 1_000_000_000_000)
        try stream.next()
        var future = try SignedStream(key: key, meter: "later", start: "2031-01-01T00:00:00Z")
        try future.next(delta: 0, export: 500_000)
        for record in stream.records[0..<8] { try publisher.send(record) }
        try publisher.send(fake)
        try publisher.send(stream.records[8])
        try publisher.send(future.records[0])

        // tail: the ten real readings verify, the forged one does not, and it says why; exit 1 for the failure.
        #expect(await eventually(60) { !tail.isRunning }, "\(tail.log)")
        #expect(tail.stop() == 1, "\(tail.log)")
        let lines = tail.log.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count == 11, "\(tail.log)")
        #expect(lines.filter { $0.contains("\"verified\":true") }.count == 10, "\(tail.log)")
        let refused = lines.filter { $0.contains("\"verified\":false") }
        #expect(refused.count == 1 && refused[0].contains("not trusted for gateway gw-1"), "\(tail.log)")
        // Export is shown beside import.
        #expect(lines.contains { $0.contains("\"meter\":\"later\"") && $0.contains("\"export_delta_mwh\":500000") }, "\(tail.log)")

        // ledger: seq 9 is the real one, priced from the real energy; the forgery is rejected, not a fork.
        #expect(await eventually(30) { ledger.log.contains("the interval starts at") }, "\(ledger.log)")
        #expect(await eventually(30) {
            ((try? await SQLiteLedgerStore.open(path: db, readOnly: true).rows()) ?? []).count == 9
        }, "\(ledger.log)")
        #expect(ledger.stop() == 0, "\(ledger.log)")
        let store = try await SQLiteLedgerStore.open(path: db, readOnly: true)
        let rows = try await store.rows()
        #expect(rows.map(\.seq) == Array(1...9))
        #expect(rows.allSatisfy { $0.importMilliwattHours == 250_000 })
        #expect(try await store.forks().isEmpty)
        let rejected = try await store.rejections()
        #expect(rejected.contains { $0.reason.contains("not trusted for gateway gw-1") }, "\(rejected.map(\.reason))")
        #expect(rejected.contains { $0.reason.contains("after the ledger's clock") }, "\(rejected.map(\.reason))")
        #expect(ledger.log.contains("announced but not trusted"), "\(ledger.log)")
        await publisher.client.shutdown()
    }

    @Test(.timeLimit(.minutes(2)))
    func aRotationSignedByTheTrustedKeyIsFollowedAndRememberedAcrossARestart() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let trust = try trustStore(dir, key)
        let publisher = try await Publisher(broker)
        let next = SigningKey.generate(.es256)
        let rotation = try KeyRotationStatement.make(gateway: "gw-1", from: key, to: next.publicKey, issuedMillis: 1_774_742_400_000)
        // The attacker's own statement, signed with its own key, rides along: it must teach nothing.
        let forgedRotation = try KeyRotationStatement.make(gateway: "gw-1", from: attacker, to: SigningKey.generate(.eddsa).publicKey, issuedMillis: 1)
        let keys = KeysAnnouncement(keys: KeySet([next.publicKey, key.publicKey]), rotations: [rotation, forgedRotation])
        _ = try publisher.client.publish(MQTTMessage(topic: "metergate/v1/gw-1/keys", payload: Array(keys.document.utf8), qos: .atLeastOnce, retain: true))

        var stream = try SignedStream(key: key)
        try stream.next(3)
        stream.signer = try RecordSigner(gateway: try GatewayID(validating: "gw-1"), meter: stream.signer.meter, sourceID: "SDM630-0012345", envelope: .jws, key: next)
        try stream.next(3)
        #expect(stream.records[3].record.previousKeyID == key.publicKey.keyID)

        let db = dir.file("ledger.db")
        func startLedger(_ log: String) throws -> BackgroundProcess {
            try BackgroundProcess(try metergateBinary(), ["ledger", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--db", db, "--trust", trust,
                                                          "--gateway", "gw-1"], logPath: dir.file(log))
        }
        let first = try startLedger("ledger-1.log")
        #expect(await eventually { first.log.components(separatedBy: "subscribed").count >= 3 }, "\(first.log)")
        for record in stream.records { try publisher.send(record) }
        #expect(await eventually(30) { ((try? await SQLiteLedgerStore.open(path: db, readOnly: true).rows()) ?? []).count == 6 }, "\(first.log)")
        #expect(first.stop() == 0, "\(first.log)")
        #expect(first.log.contains("trusting a rotated key"), "\(first.log)")

        // The trust store now holds the new key, learned through the statement, and not the attacker's.
        let listed = try runProcess(try metergateBinary(), ["trust", "list", "--trust", trust])
        #expect(listed.stdout.contains("\(next.publicKey.keyID)  ES256  rotation from \(key.publicKey.keyID)"), "\(listed.stdout)")
        #expect(!listed.stdout.contains(attacker.publicKey.keyID))
        #expect(listed.stdout.split(separator: "\n").count == 2, "\(listed.stdout)")

        // Restarted with the announcement gone from the broker, the ledger still trusts the new key.
        _ = try publisher.client.publish(MQTTMessage(topic: "metergate/v1/gw-1/keys", payload: [], qos: .atLeastOnce, retain: true))
        let second = try startLedger("ledger-2.log")
        #expect(await eventually { second.log.contains("subscribed") }, "\(second.log)")
        try stream.next()
        try publisher.send(stream.records[6])
        #expect(await eventually(30) { ((try? await SQLiteLedgerStore.open(path: db, readOnly: true).rows()) ?? []).count == 7 }, "\(second.log)")
        #expect(second.stop() == 0, "\(second.log)")
        let store = try await SQLiteLedgerStore.open(path: db, readOnly: true)
        #expect(try await store.rejections().isEmpty)
        #expect(try await store.counts().chainBreaks == 0)
        await publisher.client.shutdown()
    }

    @Test func withoutTrustTailAndLedgerRefuseToStartAndSayHow() throws {
        for arguments in [["tail"], ["ledger", "--db", "/tmp/metergate-never.db"]] {
            let result = try runProcess(try metergateBinary(), arguments + ["--broker", "mqtt://127.0.0.1:1"])
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains("--trust FILE") && result.stderr.contains("metergate trust add"), "\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/metergate-never.db"))
    }
}
