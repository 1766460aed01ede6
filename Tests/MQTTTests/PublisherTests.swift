import Delivery
import Foundation
import MQTT
import Outbox
import Synchronization
import MeterGateTesting
import TestSupport
import Testing

/// What the settlement side saw for one meter: seqs in arrival order, and the bytes of each.
struct ReceivedStream {
    var arrivals: [UInt64] = []
    var bytes: [UInt64: [UInt8]] = [:]
    var conflicting = 0

    mutating func add(seq: UInt64, payload: [UInt8]) {
        arrivals.append(seq)
        if let previous = bytes[seq], previous != payload { conflicting += 1 }
        bytes[seq] = payload
    }

    /// Seqs in order of first arrival.
    var firstArrivals: [UInt64] {
        var seen = Set<UInt64>()
        return arrivals.filter { seen.insert($0).inserted }
    }

    var duplicates: Int { arrivals.count - Set(arrivals).count }
}

/// Parses test records ("meter|epoch|seq|prev|payload") received on reading topics.
func receivedStreams(_ messages: [MQTTMessage], topics: MeterGateTopics) -> [String: ReceivedStream] {
    var streams: [String: ReceivedStream] = [:]
    for message in messages {
        guard let meter = topics.meter(ofReadingTopic: message.topic) else { continue }
        let fields = message.text.split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count >= 3, let seq = UInt64(fields[2]) else { continue }
        streams[meter, default: ReceivedStream()].add(seq: seq, payload: message.payload)
    }
    return streams
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct PublisherTests {
    @Test func drainsABacklogAndLiveRecordsInOrderToMosquittoSubNeverPastTheWindow() async throws {
        let broker = try MosquittoBroker()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let topics = MeterGateTopics(gateway: "gw")
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        for i in 0..<300 { _ = try await store.append(meter: "m\(i % 3)", chainedRecord("m\(i % 3)")) }

        let sub = try #require(which("mosquitto_sub"))
        let stdbuf = try #require(which("stdbuf"))
        let peer = try BackgroundProcess(stdbuf, ["-oL", sub, "-h", "127.0.0.1", "-p", "\(broker.port)", "-i", "settlement", "-q", "1", "-d",
                                                  "-t", "metergate/v1/gw/+/reading", "-C", "400", "-v"], logPath: dir.file("sub.log"))
        #expect(await eventually(timeout: 10) { peer.log.contains("SUBACK") })

        let window = 8
        let client = MQTTClient(configuration: clientConfiguration(broker, id: "gw", topics: topics, window: window))
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics), configuration: .init(window: window))
        let run = Task { try await publisher.run() }
        for i in 300..<400 {
            _ = try await store.append(meter: "m\(i % 3)", chainedRecord("m\(i % 3)"))
            publisher.recordsAppended()
        }
        #expect(await eventually(timeout: 30) { (try? await store.stats().delivered) == 400 })
        #expect(await eventually(timeout: 10) { !peer.isRunning })
        run.cancel()
        try await run.value

        let messages = peer.log.split(separator: "\n").compactMap { line -> MQTTMessage? in
            guard line.hasPrefix("metergate/"), let space = line.firstIndex(of: " ") else { return nil }
            return MQTTMessage(topic: String(line[..<space]), text: String(line[line.index(after: space)...]))
        }
        let streams = receivedStreams(messages, topics: topics)
        #expect(streams.keys.sorted() == ["m0", "m1", "m2"])
        for (meter, stream) in streams {
            let stored = try await store.records(meter: meter, seqs: 1...1000, limit: 1000)
            #expect(stream.arrivals == stored.map(\.seq), "\(meter) in order, each once")
            #expect(stored.allSatisfy { stream.bytes[$0.seq] == $0.bytes })
        }
        let counters = await publisher.counters
        #expect(counters.delivered == 400)
        #expect(counters.maxInflight <= window)
        #expect(counters.maxInflight > 1)
        let stats = try await store.stats()
        #expect(stats.pending == 0 && stats.inflight == 0)
    }

    @Test func aRecordTheBrokerRefusesStaysPendingAndIsRetriedAfterAPause() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        // Anonymous clients may only use the status topic: every record is refused (MQTT 5 PUBACK 0x87).
        dir.write("acl", "topic readwrite metergate/v1/gw/status\n")
        let broker = try MosquittoBroker(extraConfig: "acl_file \(dir.file("acl"))\nuser root")
        let topics = MeterGateTopics(gateway: "gw")
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        for _ in 0..<5 { _ = try await store.append(meter: "m", chainedRecord("m")) }
        let client = MQTTClient(configuration: clientConfiguration(broker, id: "gw", topics: topics))
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics),
                                        configuration: .init(window: 8, refusalPause: .milliseconds(300)))
        let run = Task { try await publisher.run() }
        #expect(await eventually(timeout: 15) { await publisher.counters.refused >= 10 })
        let counters = await publisher.counters
        run.cancel()
        try await run.value
        let stats = try await store.stats()
        #expect(stats.delivered == 0)
        #expect(stats.pending == 5)
        #expect(counters.delivered == 0)
        // Every publish is accounted for: refused (back to pending), returned to pending because mosquitto
        // closed the connection after a denial, or still in flight when the publisher stopped.
        let unaccounted = counters.published - counters.refused - counters.returnedToPending
        #expect(unaccounted >= 0 && unaccounted <= 5, "\(counters)")
    }

    @Test func replayRequestsRepublishDeliveredRecordsAndBadOnesAreCounted() async throws {
        let broker = try MosquittoBroker()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let topics = MeterGateTopics(gateway: "gw")
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        let subscriber = MQTTClient(configuration: clientConfiguration(broker, id: "settlement"))
        let seen = EventLog(subscriber)
        subscriber.subscribe("metergate/v1/gw/+/reading")
        subscriber.start()
        #expect(await eventually(timeout: 10) { !seen.subscribedSessions.isEmpty })

        for _ in 0..<20 { _ = try await store.append(meter: "m", chainedRecord("m")) }
        let client = MQTTClient(configuration: clientConfiguration(broker, id: "gw", topics: topics))
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics))
        let run = Task { try await publisher.run() }
        #expect(await eventually(timeout: 20) { (try? await store.stats().delivered) == 20 })
        #expect(await eventually(timeout: 10) { seen.messages.count == 20 })

        let pub = try #require(which("mosquitto_pub"))
        try runProcess(pub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", topics.replayRequests, "-m", #"{"meter":"m","from":5,"to":8}"#])
        try runProcess(pub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", topics.replayRequests, "-m", #"{"meter":"m","from":"five"}"#])
        try runProcess(pub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", topics.replayRequests, "-m", #"{"meter":"m","from":19,"to":25}"#])
        #expect(await eventually(timeout: 20) { seen.messages.count == 26 })
        #expect(await eventually(timeout: 10) { await publisher.counters.badReplayRequests == 1 })
        let streams = receivedStreams(seen.messages, topics: topics)
        #expect(streams["m"]?.arrivals == Array(1...20) + [5, 6, 7, 8, 19, 20])
        #expect(streams["m"]?.conflicting == 0)
        let progress = await publisher.replayProgress()
        #expect(progress.skipped == 5, "21...25 were never appended")
        #expect(progress.active == 0)
        run.cancel()
        try await run.value
        await subscriber.shutdown()
    }

    /// A broker window of 4 (mosquitto's Receive Maximum is 20 by default) does not make the publisher claim
    /// from the store 4 at a time: a backlog of 60 is claimed in one batch, one transaction and one raise of
    /// the high-water mark (its generation), and still leaves in store order, never more than 4 in flight.
    @Test(arguments: [(128, 1...2), (2, 20...40)])
    func aSmallWindowIsFilledFromClaimBatchesNotOneClaimPerHalfWindow(claimBatch: Int, raises: ClosedRange<Int>) async throws {
        let broker = try MosquittoBroker()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let topics = MeterGateTopics(gateway: "gw")
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())
        for i in 0..<60 { _ = try await store.append(meter: "m\(i % 3)", chainedRecord("m\(i % 3)")) }
        let generation = { () -> Int in
            ["a", "b"].compactMap { slot -> Int? in
                // The file: the mark's JSON on the first line, its SHA-256 on the second.
                guard let data = FileManager.default.contents(atPath: dir.file("outbox.sqlite.mark-\(slot)")),
                      let line = data.split(separator: UInt8(ascii: "\n")).first,
                      let body = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return nil }
                return body["generation"] as? Int
            }.max() ?? 0
        }
        let before = generation()
        let subscriber = MQTTClient(configuration: clientConfiguration(broker, id: "settlement"))
        let seen = EventLog(subscriber)
        subscriber.subscribe("metergate/v1/gw/+/reading", qos: .atLeastOnce)
        subscriber.start()
        #expect(await eventually(timeout: 10) { !seen.subscribedSessions.isEmpty })

        let client = MQTTClient(configuration: clientConfiguration(broker, id: "gw", topics: topics, window: 4))
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics), configuration: .init(window: 64, claimBatch: claimBatch))
        let run = Task { try await publisher.run() }
        #expect(await eventually(timeout: 20) { (try? await store.stats().delivered) == 60 })
        #expect(await eventually(timeout: 10) { seen.messages.count == 60 })
        run.cancel()
        try await run.value
        await subscriber.shutdown()

        #expect(raises.contains(generation() - before), "high-water mark raised \(generation() - before) times")
        #expect(await publisher.counters.maxInflight <= 4)
        for (meter, stream) in receivedStreams(seen.messages, topics: topics) {
            #expect(stream.arrivals == Array(1...20), "\(meter) in order, each once")
        }
        let stats = try await store.stats()
        #expect(stats.pending == 0 && stats.inflight == 0)
    }
}
