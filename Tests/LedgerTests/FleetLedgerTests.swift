import Foundation
import Testing
import TestSupport

/// A fleet's traffic (50 simulated gateways × 10 meters × 20 intervals, each gateway with its own key) taken by two
/// `metergate ledger` processes sharing one PostgreSQL database through an MQTT shared subscription.
@Suite(.serialized, .timeLimit(.minutes(8))) struct FleetLedgerTests {
    static let gateways = 50, meters = 10, intervals = 20

    struct Fleet {
        let dir = TemporaryDirectory()
        let broker: MosquittoBroker
        let server: PostgresServer
        let url: String
        let load: BackgroundProcess
        var ledgers: [BackgroundProcess] = []

        /// The broker, a fresh database, fleet-load (keys written, waiting) and two ledgers subscribed.
        init(rate: Int) async throws {
            broker = try MosquittoBroker()
            server = try PostgresServer.shared()
            url = try server.createDatabase()
            load = try BackgroundProcess(try builtBinary("fleet-load"), [
                "--broker", "127.0.0.1:\(broker.port)", "--gateways", "\(FleetLedgerTests.gateways)", "--meters", "\(FleetLedgerTests.meters)",
                "--intervals", "\(FleetLedgerTests.intervals)", "--trust-out", dir.file("trust.json"), "--wait-file", dir.file("go"),
                "--rate", "\(rate)", "--linger", "600"], logPath: dir.file("fleet.log"))
            let trust = dir.file("trust.json")
            guard await eventually(120, { FileManager.default.fileExists(atPath: trust) }) else {
                throw TestEnvironmentError("fleet-load wrote no trust store: \(load.log)")
            }
            for name in ["a", "b"] {
                ledgers.append(try BackgroundProcess(try metergateBinary(), [
                    "ledger", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--trust", trust, "--db", url,
                    "--db-password-file", server.passwordFile, "--share", "fleet", "--replay-retry", "2"], logPath: dir.file("ledger-\(name).log")))
            }
            for ledger in ledgers {
                // Two SUBACKs: the keys topic and the shared readings filter.
                guard await eventually(60, { ledger.log.contains("count=2") }) else { throw TestEnvironmentError("a ledger did not subscribe: \(ledger.log)") }
            }
            dir.write("go", "")
        }

        /// `metergate ledger export` of the shared database, parsed: (gateway, meter, epoch, seq) per row.
        func exported() throws -> [String] {
            let result = try runProcess(try metergateBinary(), ["ledger", "export", "--db", url, "--db-password-file", server.passwordFile])
            guard result.status == 0 else { throw TestEnvironmentError("export failed: \(result.stderr)") }
            return result.stdout.split(separator: "\r\n").dropFirst().map { $0.split(separator: ",").prefix(4).joined(separator: ",") }
        }

        var logs: String { ledgers.map(\.log).joined(separator: "\n----\n") + "\n----\n" + load.log }
    }

    /// Every reading the fleet signed, as the export names it.
    var expected: Set<String> {
        var all = Set<String>()
        for g in 1...Self.gateways { for m in 1...Self.meters { for s in 1...Self.intervals {
            all.insert(String(format: "gw-%05d,m%04d,E1,%d", g, m, s))
        } } }
        return all
    }

    func check(_ fleet: Fleet) async throws {
        let total = Self.gateways * Self.meters * Self.intervals
        #expect(try await eventually(300) { try fleet.exported().count >= total }, "\(fleet.logs.suffix(6000))")
        let rows = try fleet.exported()
        #expect(rows.count == total, "each reading exactly once")
        #expect(Set(rows) == expected)
        #expect(try fleet.server.psql("SELECT count(*) FROM forks", database: String(fleet.url.split(separator: "/").last!)) == "0")
        #expect(try fleet.server.psql("SELECT count(*) FROM chain_breaks", database: String(fleet.url.split(separator: "/").last!)) == "0")
    }

    @Test func twoLedgerProcessesStoreEachReadingOnce() async throws {
        let fleet = try await Fleet(rate: 0)
        defer { fleet.dir.cleanup() }
        try await check(fleet)
        var stored = 0
        for ledger in fleet.ledgers {
            #expect(ledger.stop(signal: SIGTERM) == 0)
            let count = ledger.log.components(separatedBy: "stored=").last.flatMap { Int($0.prefix { $0.isNumber }) } ?? -1
            #expect(count > 0, "both processes took a share: \(ledger.log.suffix(2000))")
            stored += count
        }
        #expect(stored == Self.gateways * Self.meters * Self.intervals)
        _ = fleet.load.stop()
    }

    /// One process SIGKILLed mid-run: what it had taken but not stored comes back (the other process finds the gaps
    /// and asks the simulated gateways for a replay); nothing is lost and nothing stored twice.
    @Test func aLedgerProcessKilledMidRunLosesNothing() async throws {
        let fleet = try await Fleet(rate: 400)
        defer { fleet.dir.cleanup() }
        let database = String(fleet.url.split(separator: "/").last!)
        #expect(try await eventually(120) { (Int(try fleet.server.psql("SELECT count(*) FROM readings", database: database)) ?? 0) >= 3_000 })
        _ = fleet.ledgers[0].stop(signal: SIGKILL, timeout: 5)
        try await check(fleet)
        // How the killed process's share came back, for the log: replays asked for by the survivor.
        print("fleet: the surviving ledger asked for \(fleet.ledgers[1].log.components(separatedBy: "asked for a replay").count - 1) replays")
        #expect(fleet.ledgers[1].stop(signal: SIGTERM) == 0)
        _ = fleet.load.stop()
    }
}
