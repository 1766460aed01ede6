import Crypto
import Foundation
import MQTT
import Outbox
import SQLite
import MeterGateTesting
import TestSupport
import Testing

@Suite(.serialized, .timeLimit(.minutes(5))) struct CrashRecoveryTests {
    /// A real process appends and publishes (`outbox-soak`, a test tool); the test kills it with SIGKILL at
    /// random moments and starts it again, then lets it finish. Every record must be stored once with
    /// seqs 1...n per meter and an unbroken chain, and every one must reach the subscriber with the
    /// stored bytes: a seq that was published is never reused for other bytes after a crash.
    @Test func aProcessKilledAtRandomMomentsLosesNothingAndReusesNoSeq() async throws {
        let broker = try MosquittoBroker()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let db = dir.file("outbox.sqlite")
        let topics = MeterGateTopics(gateway: "soak")
        let subscriber = MQTTClient(configuration: clientConfiguration(broker, id: "settlement"))
        let seen = EventLog(subscriber)
        subscriber.subscribe("metergate/v1/soak/+/reading")
        subscriber.subscribe(topics.status)
        subscriber.start()
        #expect(await eventually(timeout: 10) { seen.subscribedSessions.count == 2 })

        let seed = UInt64(Date().timeIntervalSince1970 * 1000)
        var random = SeededGenerator(state: seed)
        let total = 4000
        let arguments = ["--db", db, "--port", "\(broker.port)", "--gateway", "soak", "--total", "\(total)",
                         "--interval-ms", "3", "--batch", "2"]
        var kills = 0
        for round in 1...5 {
            let child = try BackgroundProcess(try builtBinary("outbox-soak"), arguments, logPath: dir.file("soak-\(round).log"))
            // The kill comes from a thread of its own, so a busy cooperative pool cannot delay it.
            let delay = useconds_t(Int.random(in: 300...1200, using: &random) * 1000)
            let pid = child.pid
            let killer = Thread { usleep(delay); kill(pid, SIGKILL) }
            killer.start()
            #expect(await eventually(timeout: 30) { !child.isRunning })
            if child.process.terminationReason == .uncaughtSignal && child.process.terminationStatus == SIGKILL {
                kills += 1
            } else {
                Issue.record("round \(round): the child had already exited (\(child.process.terminationStatus)): \(child.log)")
            }
            if round == 1 {
                // The broker publishes the last will for a connection that died without DISCONNECT.
                #expect(await eventually(timeout: 15) { seen.messages.contains { $0.topic == topics.status && $0.text == "offline" } },
                        "last will after SIGKILL")
            }
        }
        let final = try BackgroundProcess(try builtBinary("outbox-soak"), arguments, logPath: dir.file("soak-final.log"))
        #expect(await eventually(timeout: 120) { !final.isRunning }, "the last run finishes: \(final.log)")
        #expect(final.process.terminationStatus == 0, "\(final.log)")
        #expect(final.log.contains("all \(total) records delivered"))
        print("crash test: seed \(seed), \(kills) SIGKILLs")
        #expect(kills >= 3, "the child was killed mid-run several times")

        // The store: seqs 1...n per meter, each prev the SHA-256 of the record before it.
        let check = try SQLiteDatabase(path: db, readOnly: true)
        #expect(try check.scalarText("PRAGMA integrity_check") == "ok")
        #expect(try check.scalarInt("SELECT count(*) FROM records") == Int64(total))
        var stored: [String: [(seq: UInt64, bytes: [UInt8], hash: [UInt8])]] = [:]
        let rows = try check.prepare("SELECT meter, seq, bytes, hash FROM records ORDER BY meter, seq", persistent: false)
        while try rows.step() {
            stored[rows.text(0) ?? "", default: []].append((UInt64(rows.int64(1)), rows.blob(2), rows.blob(3)))
        }
        #expect(stored.keys.sorted() == ["m0", "m1", "m2"])
        for (meter, records) in stored {
            #expect(records.map(\.seq) == Array(1...UInt64(records.count)), "\(meter): no seq skipped or reused")
            var prev = [UInt8](repeating: 0, count: 32)
            for record in records {
                let fields = String(decoding: record.bytes, as: UTF8.self).split(separator: "|")
                #expect(fields[3] == prev.map { String(format: "%02x", $0) }.joined()[...], "\(meter) seq \(record.seq) chains")
                #expect(record.hash == Array(SHA256.hash(data: record.bytes)))
                prev = record.hash
            }
        }
        // The subscriber: every record, with the stored bytes.
        #expect(await eventually(timeout: 10) {
            receivedStreams(seen.messages, topics: topics).values.map { Set($0.arrivals).count }.reduce(0, +) == total
        })
        let streams = receivedStreams(seen.messages, topics: topics)
        for (meter, records) in stored {
            let stream = try #require(streams[meter])
            #expect(stream.conflicting == 0, "\(meter): a seq always carried the same bytes")
            #expect(records.allSatisfy { stream.bytes[$0.seq] == $0.bytes }, "\(meter): received what is stored")
        }
        // The farewell left before the process exited; the subscriber's copy may still be on its way.
        #expect(await eventually(timeout: 10) { seen.messages.last { $0.topic == topics.status }?.text == "offline" }, "farewell on a clean exit")
        await subscriber.shutdown()
    }
}

@Suite(.timeLimit(.minutes(5))) struct ReplayCommandTests {
    @Test func replayRepublishesDeliveredRecordsWithAProgressLine() async throws {
        let broker = try MosquittoBroker()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("outbox.sqlite")
        let store = try await SQLiteOutbox.open(path: path, configuration: OutboxConfiguration())
        for _ in 0..<30 { _ = try await store.append(meter: "m1", chainedRecord("m1")) }
        try await store.markDelivered(try await store.claimPending(limit: 20).map(\.id), at: Date())
        await store.close()

        let subscriber = MQTTClient(configuration: clientConfiguration(broker, id: "settlement"))
        let seen = EventLog(subscriber)
        subscriber.subscribe("metergate/v1/gw/+/reading")
        subscriber.start()
        #expect(await eventually(timeout: 10) { !seen.subscribedSessions.isEmpty })
        let r = try runProcess(try metergateBinary(), ["replay", "--db", path, "--host", "127.0.0.1", "--port", "\(broker.port)", "--gateway", "gw",
                                                       "--meter", "m1", "--from", "11", "--to", "25"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("replayed 10 record(s) of meter m1 seq 11...25; 5 not available"), "\(r.stdout)")
        #expect(r.stderr.contains("records/s"))
        #expect(await eventually(timeout: 10) { seen.messages.count == 10 })
        let streams = receivedStreams(seen.messages, topics: MeterGateTopics(gateway: "gw"))
        #expect(streams["m1"]?.arrivals == Array(11...20))
        let none = try runProcess(try metergateBinary(), ["replay", "--db", path, "--host", "127.0.0.1", "--port", "\(broker.port)", "--gateway", "gw",
                                                          "--meter", "m1", "--from", "21", "--to", "30"])
        #expect(none.status == 1)
        #expect(none.stderr.contains("nothing to replay"))
        await subscriber.shutdown()
    }
}
