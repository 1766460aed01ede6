import Foundation
import Outbox
import MeterGateTesting
import TestSupport
import Testing

/// `metergate outbox stats|export|vacuum` on a real outbox file.
@Suite(.timeLimit(.minutes(5))) struct OutboxCommandTests {
    /// An outbox with 5 records of m1 (2 delivered, 1 claimed and not acknowledged, so pending on disk) and 3 of m2.
    func makeOutbox(_ dir: TemporaryDirectory) async throws -> String {
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        for i in 0..<8 { _ = try await store.append(meter: i < 5 ? "m1" : "m2", chainedRecord(i < 5 ? "m1" : "m2")) }
        let claimed = try await store.claimPending(limit: 3)
        try await store.markDelivered(Array(claimed.prefix(2).map(\.id)), at: Date())
        await store.close()
        return path
    }

    @Test func statsCountsByStateAndMeterAndLeavesARunningGatewaysClaimsAlone() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        // The gateway's store stays open, with one record claimed (inflight) and not yet acknowledged.
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        for i in 0..<8 { _ = try await store.append(meter: i < 5 ? "m1" : "m2", chainedRecord(i < 5 ? "m1" : "m2")) }
        let claimed = try await store.claimPending(limit: 3)
        try await store.markDelivered(Array(claimed.prefix(2).map(\.id)), at: Date())
        let r = try runProcess(try metergateBinary(), ["outbox", "stats", "--db", path])
        #expect(r.status == 0, "\(r.stderr)")
        // Inflight is the gateway's own state: beside it, a claimed record counts as pending (not acknowledged).
        #expect(r.stdout.contains("records: 8 (pending 6, inflight 0, delivered 2)"), "\(r.stdout)")
        #expect(r.stdout.contains("oldest unsent: 20"))
        let m1 = try #require(r.stdout.split(separator: "\n").first { $0.hasPrefix("m1 ") })
        #expect(m1.split(separator: " ").map(String.init) == ["m1", "5", "1", "3", "0", "2"])
        // The gateway's own view still has it inflight, and inspecting moved nothing: its PUBACK still lands.
        let own = try await store.stats()
        #expect((own.pending, own.inflight, own.delivered) == (5, 1, 2))
        #expect(try await store.markDelivered([claimed[2].id], at: Date()) == 1)
        await store.close()
        let after = try runProcess(try metergateBinary(), ["outbox", "stats", "--db", path])
        #expect(after.stdout.contains("records: 8 (pending 5, inflight 0, delivered 3)"), "\(after.stdout)")
    }

    @Test func exportWritesTheStoredRecordsOnePerLine() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try await makeOutbox(dir)
        let r = try runProcess(try metergateBinary(), ["outbox", "export", "--db", path, "--meter", "m1", "--from", "2", "--to", "4"])
        #expect(r.status == 0, "\(r.stderr)")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration(), options: .init(inspectOnly: true))
        let expected = try await store.records(meter: "m1", seqs: 2...4, limit: 10).map { String(decoding: $0.bytes, as: UTF8.self) + "\n" }.joined()
        #expect(r.stdout == expected)
        #expect(r.stderr.contains("exported 3 records of meter m1"))
        let all = try runProcess(try metergateBinary(), ["outbox", "export", "--db", path, "--meter", "m2", "-o", dir.file("m2.txt")])
        #expect(all.status == 0)
        #expect(try String(contentsOfFile: dir.file("m2.txt"), encoding: .utf8).split(separator: "\n").count == 3)
    }

    @Test func badArgumentsAndMissingThingsSayWhatIsWrong() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try await makeOutbox(dir)
        let binary = try metergateBinary()
        let both = try runProcess(binary, ["outbox", "stats"])
        #expect(both.status == 2)
        #expect(both.stderr.contains("either --config FILE or --db PATH"))
        let range = try runProcess(binary, ["outbox", "export", "--db", path, "--meter", "m1", "--from", "4", "--to", "2"])
        #expect(range.status == 2)
        #expect(range.stderr.contains("--from 4 is after --to 2"))
        let nothing = try runProcess(binary, ["outbox", "export", "--db", path, "--meter", "nope"])
        #expect(nothing.status == 1)
        #expect(nothing.stderr.contains("no stored records of meter nope"))
        let missing = try runProcess(binary, ["outbox", "stats", "--db", dir.file("none.sqlite")])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no outbox at \(dir.file("none.sqlite"))"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("none.sqlite")), "inspection creates nothing")
        let junk = dir.write("junk.sqlite", String(repeating: "junk ", count: 500))
        let damaged = try runProcess(binary, ["outbox", "stats", "--db", junk])
        #expect(damaged.status == 1)
        #expect(damaged.stderr.contains("damaged"), "\(damaged.stderr)")
        #expect(FileManager.default.fileExists(atPath: junk), "inspection moves nothing")
    }

    @Test func vacuumAppliesRetentionAndCompactsTheFile() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        for _ in 0..<50 {
            _ = try await store.append((0..<20).map { _ in AppendRequest(meter: "m", build: chainedRecord("m", payload: String(repeating: "v", count: 500))) })
        }
        try await store.markDelivered(try await store.claimPending(limit: 900).map(\.id), at: Date(timeIntervalSinceNow: -40 * 86_400))
        await store.close()
        let before = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        let r = try runProcess(try metergateBinary(), ["outbox", "vacuum", "--db", path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("expired 900 delivered record(s)"), "\(r.stdout)")
        let after = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        #expect(after * 4 < before, "\(before) -> \(after) bytes")
        let stats = try runProcess(try metergateBinary(), ["outbox", "stats", "--db", path])
        #expect(stats.stdout.contains("records: 100 (pending 100, inflight 0, delivered 0)"))
    }
}
