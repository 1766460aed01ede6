import Foundation
import Testing
import TestSupport

/// The real gateway (simulated meter over Modbus TCP → accounting → signing → outbox → mosquitto) and the
/// real ledger: a ledger started late asks the gateway to replay what it missed, and ends up with every seq.
@Suite(.serialized, .timeLimit(.minutes(5))) struct EndToEndTests {
    @Test func aLateLedgerBackfillsFromTheGatewaysOutboxThroughCmdReplay() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let meters = try SimulatedMeters(logPath: dir.file("sim.log"))
        let port = meters.port
        let key = dir.file("signing.key")
        #expect(try runProcess(try metergateBinary(), ["keygen", "--out", key]).status == 0)
        let received = dir.file("received.txt")
        let subscriber = try BackgroundProcess(which("mosquitto_sub") ?? "/usr/bin/mosquitto_sub",
                                               ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", "metergate/v1/e2e-gw/+/reading"],
                                               logPath: received)
        defer { subscriber.stop() }
        let config = dir.write("gw.yaml", """
            gateway: { id: e2e-gw, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            buses:
              - { id: sim, tcp: { host: 127.0.0.1, port: \(port) } }
            meters:
              - { id: a, bus: sim, unit: 1, profile: eastron-sdm630, poll: 200ms }
            mqtt: { host: 127.0.0.1, port: \(broker.port) }
            signing: { key: \(key) }
            metrics: { enabled: false }
            """)
        let gateway = try BackgroundProcess(try metergateBinary(), ["run", "--config", config, "--boards", "\(repositoryRoot)/boards",
                                                                    "--profiles", "\(repositoryRoot)/profiles"], logPath: dir.file("gw.log"))
        defer { gateway.stop() }
        func published() -> Int { ((try? String(contentsOfFile: received, encoding: .utf8)) ?? "").split(separator: "\n").count }
        #expect(await eventually(60) { published() >= 3 }, "\(gateway.log)")

        // The ledger starts after at least three readings went out: it sees seq 4 or later first and asks for 1…N.
        let db = dir.file("ledger.db")
        let tariff = dir.write("flat.yaml", "currency: EUR\nprecision: 4\nflat: 31.25\n")
        let trust = dir.file("trust.json")
        #expect(try runProcess(try metergateBinary(), ["trust", "add", "--trust", trust, "--gateway", "e2e-gw", "--key", key]).status == 0)
        let ledger = try BackgroundProcess(try metergateBinary(), [
            "ledger", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--db", db, "--gateway", "e2e-gw", "--tariff", tariff, "--trust", trust,
            "--replay-retry", "2"], logPath: dir.file("ledger.log"))
        defer { ledger.stop() }

        func seqs() throws -> [Int] {
            let csv = try runProcess(try metergateBinary(), ["ledger", "export", "--db", db]).stdout
            return csv.split(separator: "\r\n").dropFirst().compactMap { Int($0.split(separator: ",")[3]) }.sorted()
        }
        // Complete from seq 1 and at least 6 long: the early seqs can only have come from a replay.
        let complete = try await eventually(60) {
            let s = try seqs()
            return s.count >= 6 && s == Array(1...s.count)
        }
        let final = (try? seqs()) ?? []
        #expect(complete, "seqs: \(final)\n\(ledger.log)\n\(gateway.log)")
        #expect(ledger.log.contains("asked for a replay"), "\(ledger.log)")
        #expect(gateway.log.contains("replay"), "\(gateway.log)")
        #expect(ledger.stop(signal: SIGTERM) == 0, "\(ledger.log)")
        #expect(ledger.log.contains("rejected=0") && ledger.log.contains("forks=0") && ledger.log.contains("chain_breaks=0"), "\(ledger.log)")
        #expect(gateway.stop(signal: SIGTERM, timeout: 30) == 0, "\(gateway.log)")
        #expect(meters.process.stop(signal: SIGINT) == 0)
    }
}
