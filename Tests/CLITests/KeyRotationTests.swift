import Foundation
import TestSupport
import Testing

/// A gateway rotated to a new key (keygen --rotate-from, signing.rotations) verifies end to end at a settlement
/// side whose trust store holds only the old key: the statement on the keys topic carries the trust over, the
/// first record of the new key names the old one (prev_kid, from the SQLite outbox), and the chain goes on.
@Suite(.serialized, .timeLimit(.minutes(5))) struct KeyRotationTests {
    @Test(.timeLimit(.minutes(3)))
    func aRotatedGatewayVerifiesWithATrustStoreHoldingOnlyTheOldKey() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let meters = try SimulatedMeters(logPath: dir.file("sim.log"))
        let port = meters.port
        let bin = try metergateBinary()
        let oldKey = dir.file("old.key"), newKey = dir.file("new.key")
        #expect(try runProcess(bin, ["keygen", "--out", oldKey]).status == 0)
        let trust = dir.file("trust.json")
        #expect(try runProcess(bin, ["trust", "add", "--trust", trust, "--gateway", "rot-gw", "--key", oldKey]).status == 0)
        let sub = which("mosquitto_sub") ?? "/usr/bin/mosquitto_sub"
        let received = dir.file("received.txt")
        let subscriber = try BackgroundProcess(sub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", "metergate/v1/rot-gw/+/reading"],
                                               logPath: received)
        defer { subscriber.stop() }
        func lines() -> Int { ((try? String(contentsOfFile: received, encoding: .utf8)) ?? "").split(separator: "\n").count }
        func config(_ signing: String) -> String {
            dir.write("gw.yaml", """
                gateway: { id: rot-gw, board: sim, state_dir: \(dir.path)/state, interval: 1s }
                metrics: { enabled: false }
                buses:
                  - { id: sim, tcp: { host: 127.0.0.1, port: \(port) } }
                meters:
                  - { id: a, bus: sim, unit: 1, profile: eastron-sdm630, poll: 200ms }
                mqtt: { host: 127.0.0.1, port: \(broker.port) }
                signing: \(signing)
                """)
        }
        func run() throws -> BackgroundProcess {
            try BackgroundProcess(bin, ["run", "--config", dir.file("gw.yaml"), "--boards", "\(repositoryRoot)/boards", "--profiles", "\(repositoryRoot)/profiles"],
                                  logPath: dir.file("gw-\(UInt32.random(in: 0...UInt32.max)).log"))
        }
        _ = config("{ key: \(oldKey) }")
        let first = try run()
        #expect(waitUntil(timeout: 60) { lines() >= 3 }, "\(first.log)")
        #expect(first.stop(signal: SIGTERM, timeout: 30) == 0, "\(first.log)")

        // The rotation: a new key and a statement signed by the old one; the old key's public half stays published.
        let rotated = try runProcess(bin, ["keygen", "--out", newKey, "--algorithm", "ES256", "--rotate-from", oldKey, "--gateway", "rot-gw"])
        #expect(rotated.status == 0 && rotated.stdout.contains("rotation statement: \(newKey).rotation"), "\(rotated.stdout)\(rotated.stderr)")
        let oldPublic = dir.write("old.jwks", try runProcess(bin, ["keygen", "--key-set", oldKey]).stdout)
        _ = config("{ key: \(newKey), algorithm: ES256, previous_keys: [\(oldPublic)], rotations: [\(newKey).rotation] }")
        let check = try runProcess(bin, ["check", "--config", dir.file("gw.yaml"), "--boards", "\(repositoryRoot)/boards", "--profiles", "\(repositoryRoot)/profiles"])
        #expect(check.status == 0 && check.stdout.contains("rotation: "), "\(check.stdout)\(check.stderr)")
        // A statement naming another gateway is a config error, not a surprise at settlement.
        let stray = try runProcess(bin, ["keygen", "--out", dir.file("stray.key"), "--rotate-from", oldKey, "--gateway", "other-gw"])
        #expect(stray.status == 0)
        _ = config("{ key: \(dir.file("stray.key")), previous_keys: [\(oldPublic)], rotations: [\(dir.file("stray.key")).rotation] }")
        let refused = try runProcess(bin, ["check", "--config", dir.file("gw.yaml"), "--boards", "\(repositoryRoot)/boards", "--profiles", "\(repositoryRoot)/profiles"])
        #expect(refused.status == 2 && refused.stderr.contains("names gateway 'other-gw'"), "\(refused.stderr)")
        _ = config("{ key: \(newKey), algorithm: ES256, previous_keys: [\(oldPublic)], rotations: [\(newKey).rotation] }")

        let before = lines()
        let tail = try BackgroundProcess(bin, ["tail", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--gateway", "rot-gw", "--trust", trust,
                                               "--count", "3", "--timeout", "90"], logPath: dir.file("tail.log"))
        defer { tail.stop() }
        let second = try run()
        #expect(waitUntil(timeout: 60) { lines() >= before + 3 }, "\(second.log)")
        #expect(waitUntil(timeout: 60) { !tail.isRunning }, "\(tail.log)")
        #expect(tail.stop() == 0, "\(tail.log)")
        #expect(tail.log.contains("trusting") && tail.log.contains("✓") && !tail.log.contains("✗"), "\(tail.log)")
        #expect(second.stop(signal: SIGTERM, timeout: 30) == 0, "\(second.log)")

        // The trust store learned the new key; with it, verify follows the whole stream across the rotation.
        let listed = try runProcess(bin, ["trust", "list", "--trust", trust])
        #expect(listed.stdout.contains("ES256  rotation from"), "\(listed.stdout)")
        let verify = try runProcess(bin, ["verify", "--trust", trust, "--from-start", "--tolerate-redelivery", "--json", received])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("\"key_rotations\":[") && !verify.stdout.contains("\"key_rotations\":[]"), "\(verify.stdout)")
        // The old key alone (no statement followed) does not verify the new records.
        let oldOnly = dir.file("old-only.json")
        #expect(try runProcess(bin, ["trust", "add", "--trust", oldOnly, "--gateway", "rot-gw", "--key", oldKey]).status == 0)
        #expect(try runProcess(bin, ["verify", "--trust", oldOnly, "--tolerate-redelivery", received]).status == 1)
    }
}
