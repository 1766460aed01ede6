import Delivery
import Foundation
import MQTT
import Outbox
import Synchronization
import MeterGateTesting
import TestSupport
import Testing

/// A TCP relay (socat) in front of the broker, for the gateway only: the test opens it once the
/// settlement subscriber is back after an outage.
final class Relay: @unchecked Sendable {
    // Safe: used by one test only.
    let port = freeLoopbackPort()
    let target: Int
    let logDirectory: TemporaryDirectory
    private var child: BackgroundProcess?

    init(to target: Int, logDirectory: TemporaryDirectory) {
        self.target = target
        self.logDirectory = logDirectory
    }

    func open() throws {
        let socat = try #require(which("socat"))
        child = try BackgroundProcess(socat, ["TCP-LISTEN:\(port),bind=127.0.0.1,fork,reuseaddr", "TCP:127.0.0.1:\(target)"],
                                      logPath: logDirectory.file("relay.log"))
        guard waitUntil(timeout: 10, { isListening(port: self.port) }) else { throw TestEnvironmentError("socat relay did not start") }
    }

    /// SIGKILL: the relay and every connection through it are gone at once.
    func close() {
        child?.stop(signal: SIGKILL, timeout: 5)
        child = nil
    }

    deinit { close() }
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct BrokerOutageTests {
    /// The broker is killed (SIGKILL) and restarted three times while records keep coming. The settlement
    /// subscriber must be subscribed again before the gateway may reconnect (else it would miss messages
    /// that are not the gateway's to lose), so the gateway reaches the broker through a relay that the
    /// test opens again only once the subscription is back.
    @Test func everySeqArrivesInOrderAcrossBrokerRestartsWithDuplicatesOnlyFromLostPubacks() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let relay = Relay(to: broker.port, logDirectory: dir)
        try relay.open()
        let topics = MeterGateTopics(gateway: "gw")
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration())

        let subscriber = MQTTClient(configuration: clientConfiguration(broker, id: "settlement"))
        let seen = EventLog(subscriber)
        subscriber.subscribe("metergate/v1/gw/+/reading")
        subscriber.start()
        #expect(await eventually(timeout: 10) { seen.subscribedSessions.count == 1 })

        let window = 16
        var gatewayConfiguration = clientConfiguration(broker, id: "gw", topics: topics, window: window)
        gatewayConfiguration.port = relay.port
        let client = MQTTClient(configuration: gatewayConfiguration)
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics), configuration: .init(window: window, flushInterval: .milliseconds(20)))
        let run = Task { try await publisher.run() }

        let total = 3000
        let producer = Task {
            for i in stride(from: 0, to: total, by: 3) {
                _ = try await store.append((0..<3).map { j in AppendRequest(meter: "m\((i + j) % 3)", build: chainedRecord("m\((i + j) % 3)")) })
                publisher.recordsAppended()
                try await Task.sleep(for: .milliseconds(4))
            }
        }
        let outages = 3
        for outage in 1...outages {
            try await Task.sleep(for: .milliseconds(900))
            broker.kill()
            relay.close()
            try await Task.sleep(for: .milliseconds(300))
            try broker.restart()
            #expect(await eventually(timeout: 15) { seen.subscribedSessions.count == outage + 1 }, "subscriber back after outage \(outage)")
            try relay.open()
        }
        try await producer.value
        #expect(await eventually(timeout: 60) {
            guard let stats = try? await store.stats() else { return false }
            return stats.pending == 0 && stats.inflight == 0
        })
        #expect(await eventually(timeout: 10) { receivedStreams(seen.messages, topics: topics).values.map { Set($0.arrivals).count }.reduce(0, +) >= total - 50 })
        try await Task.sleep(for: .milliseconds(300))

        // A broker that acknowledged a message and died before forwarding it loses it: the gateway is no
        // longer responsible. The settlement side sees the gap in seq and asks for a replay.
        var streams = receivedStreams(seen.messages, topics: topics)
        var missing: [String: [UInt64]] = [:]
        for meter in ["m0", "m1", "m2"] {
            let have = Set(streams[meter]?.arrivals ?? [])
            missing[meter] = (1...UInt64(total / 3)).filter { !have.contains($0) }
        }
        let gaps = missing.values.map(\.count).reduce(0, +)
        for (meter, seqs) in missing where !seqs.isEmpty {
            try subscriber.publish(MQTTMessage(topic: topics.replayRequests, payload: ReplayRequest(meter: meter, seqs: seqs.min()!...seqs.max()!).json))
        }
        if gaps > 0 {
            #expect(await eventually(timeout: 30) {
                let s = receivedStreams(seen.messages, topics: topics)
                return ["m0", "m1", "m2"].allSatisfy { Set(s[$0]?.arrivals ?? []).count == total / 3 }
            })
            streams = receivedStreams(seen.messages, topics: topics)
        }
        run.cancel()
        try await run.value
        await subscriber.shutdown()

        let counters = await publisher.counters
        print("outage test: \(gaps) seqs lost by the killed broker after its PUBACK and replayed; duplicates \(streams.values.map(\.duplicates).reduce(0, +)); returned to pending \(counters.returnedToPending); max inflight \(counters.maxInflight)")
        for meter in ["m0", "m1", "m2"] {
            let stream = try #require(streams[meter])
            #expect(Set(stream.arrivals) == Set(1...UInt64(total / 3)), "\(meter): every seq arrives")
            let recovered = Set(missing[meter] ?? [])
            let firstArrivals = stream.firstArrivals.filter { !recovered.contains($0) }
            #expect(firstArrivals == firstArrivals.sorted(), "\(meter): in order")
            #expect(stream.conflicting == 0, "\(meter): a seq always carries the same record")
            let stored = try await store.records(meter: meter, seqs: 1...UInt64(total), limit: total)
            #expect(stored.allSatisfy { stream.bytes[$0.seq] == $0.bytes })
        }
        // Duplicates come only from records in flight when a connection dropped (and from replays).
        let duplicates = streams.values.map(\.duplicates).reduce(0, +)
        #expect(duplicates <= outages * window + gaps)
        #expect(Int64(duplicates) <= counters.returnedToPending + Int64(gaps))
        #expect(counters.maxInflight <= window)
        #expect(client.currentSession == nil)
    }
}
