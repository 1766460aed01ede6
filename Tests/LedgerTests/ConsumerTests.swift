import Delivery
import Foundation
import Ledger
import Logging
import MQTT
import MeterCore
import Signing
import Synchronization
import Testing
import TestSupport

/// Collects the messages a client receives, on a task of its own.
final class Inbox: Sendable {
    private let messages = Mutex<[MQTTMessage]>([])
    private let acks = Mutex<Int>(0)
    private let connected = Mutex<Bool>(false)

    init(_ client: MQTTClient) {
        Task { [self] in
            for await event in client.events {
                switch event {
                case .message(let m): messages.withLock { $0.append(m) }
                case .subscribed: acks.withLock { $0 += 1 }
                case .connected: connected.withLock { $0 = true }
                default: break
                }
            }
        }
    }

    var all: [MQTTMessage] { messages.withLock { $0 } }
    var subscriptions: Int { acks.withLock { $0 } }
    var isConnected: Bool { connected.withLock { $0 } }
}

func testClient(_ broker: MosquittoBroker, _ id: String) -> MQTTClient {
    MQTTClient(configuration: MQTTClientConfiguration(host: "127.0.0.1", port: broker.port, clientID: "\(id)-\(UInt32.random(in: 0...UInt32.max))",
                                                      keepaliveSeconds: 5, backoff: BackoffPolicy(initial: .milliseconds(100), maximum: .milliseconds(500)),
                                                      connectTimeout: .seconds(5)),
               logger: Logger(label: "test.\(id)"))
}

/// Publishes signed records the way the gateway's publisher does: QoS 1 on `<meter>/reading`.
struct Publisher {
    let client: MQTTClient
    let inbox: Inbox

    init(_ broker: MosquittoBroker) async throws {
        client = testClient(broker, "pub")
        inbox = Inbox(client)
        client.start()
        let up = await eventually { self.inbox.isConnected }
        if !up { throw TestEnvironmentError("publisher did not connect to mosquitto on \(broker.port)") }
    }

    func send(_ record: SignedRecord, topic: String? = nil) throws {
        let t = topic ?? MeterGateTopics(gateway: record.record.gateway.rawValue).reading(meter: record.record.meter.rawValue)
        _ = try client.publish(MQTTMessage(topic: t, payload: record.bytes, qos: .atLeastOnce))
    }
}

/// A consumer's trust: `key` for `gateway` only, learning rotations from the keys topic.
func trusting(_ key: SigningKey, for gateway: String) -> TrustFollower {
    var store = TrustStore()
    store.add(TrustedKey(key: key.publicKey, addedMillis: 0), gateway: gateway)
    return TrustFollower(store: store, keys: KeySet(), path: nil)
}

let fastReplays = ReplayPolicy(settleDelay: .milliseconds(300), retryInterval: .seconds(1), minimumSpacing: .milliseconds(50))

@Suite(.serialized, .timeLimit(.minutes(5))) struct ConsumerTests {
    let key = SigningKey.generate(.eddsa)

    /// A ledger on a flat tariff, consuming gw-1's readings (trusting ``key``) from `broker`, with its subscriptions
    /// acknowledged, and its store; the caller cancels the task.
    func startedConsumer(_ broker: MosquittoBroker, in dir: TemporaryDirectory) async throws -> (LedgerConsumer, Task<Void, Never>, SQLiteLedgerStore) {
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"),
                                               tariff: try TariffFile.parse("currency: EUR\nprecision: 4\nflat: 31.25\n", file: "flat.yaml"))
        let consumer = LedgerConsumer(store: store, client: testClient(broker, "ledger"),
                                      configuration: LedgerConsumerConfiguration(gateway: "gw-1", trust: trusting(key, for: "gw-1"), replay: fastReplays))
        let running = Task { await consumer.run() }
        #expect(await eventually { await consumer.subscriptionsAcknowledged == 2 })
        return (consumer, running, store)
    }

    @Test func duplicatesAreDroppedAGapIsAskedForUntilTheReplayFillsIt() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let topics = MeterGateTopics(gateway: "gw-1")
        let publisher = try await Publisher(broker)
        // The gateway's retained keys are announced; the consumer trusts the key because its trust store holds it for gw-1.
        _ = try publisher.client.publish(topics.keysMessage(Array(KeySet([key.publicKey]).document.utf8)))
        // Whoever watches cmd/replay sees what the gateway's publisher would be asked.
        let watcher = testClient(broker, "watch")
        let requests = Inbox(watcher)
        watcher.subscribe(topics.replayRequests)
        watcher.start()
        #expect(await eventually { requests.subscriptions == 1 })

        let (consumer, running, store) = try await startedConsumer(broker, in: dir)
        defer { running.cancel() }

        var stream = try SignedStream(key: key)
        try stream.next(7)
        for i in [0, 1, 2, 2, 5, 6] { try publisher.send(stream.records[i]) }     // seq 3 twice, 4 and 5 missing
        #expect(await eventually { let c = await consumer.counters; return c.stored == 5 && c.duplicates == 1 })
        let streamKey = stream.records[0].record.stream
        // The gaps are worked out after a batch's readings are counted (the store is asked once more): waited for.
        #expect(await eventually { await consumer.openGaps == [streamKey: [4...5]] })

        // Asked for on cmd/replay in the publisher's format, and asked again while the gap stays open.
        #expect(await eventually { requests.all.count >= 2 }, "replay requests: \(requests.all.map(\.text))")
        for message in requests.all {
            let request = try ReplayRequest(json: message.payload)
            #expect(request == ReplayRequest(meter: "main", seqs: 4...5))
            #expect(message.topic == "metergate/v1/gw-1/cmd/replay")
        }

        // The replay arrives: the gap closes, the ledger is complete and the requests stop.
        try publisher.send(stream.records[3])
        try publisher.send(stream.records[4])
        #expect(await eventually { let gaps = await consumer.openGaps; let c = await consumer.counters; return gaps.isEmpty && c.stored == 7 })
        #expect(await store.gaps(of: streamKey).isEmpty)
        // The requests stop: a request sent just before the gap closed may still land, then none for longer than the
        // retry interval (1 s). Waits for that quiet spell, failing if requests keep coming for 15 s.
        var count = requests.all.count, quietSince = ContinuousClock.now
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now - quietSince < .milliseconds(1_500), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            if requests.all.count != count { count = requests.all.count; quietSince = .now }
        }
        #expect(ContinuousClock.now - quietSince >= .milliseconds(1_500), "replay requests went on after the gap closed: \(requests.all.count)")

        // A fork of seq 2 is kept aside; the ledger row of seq 2 stays as it was.
        let rowsBefore = try await store.rows()
        try publisher.send(try stream.fork(of: 2))
        #expect(await eventually { await consumer.counters.forks == 1 })
        #expect(try await store.rows() == rowsBefore)
        #expect(rowsBefore.map(\.seq) == Array(1...7))
        #expect(rowsBefore.allSatisfy { $0.amount.formatted(fractionDigits: 4) == "7.8125" })
        let final = await consumer.counters
        #expect(final.rejected == 0 && final.chainBreaks == 0)

        running.cancel()
        await running.value
        await publisher.client.shutdown()
        await watcher.shutdown()
    }

    /// A signed meter replacement and readings of a stranger on a pinned position are stored like any reading,
    /// and counted, so the ledger's summary shows them.
    @Test func aMeterReplacementIsStoredAndCounted() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let publisher = try await Publisher(broker)
        let (consumer, running, _) = try await startedConsumer(broker, in: dir)
        defer { running.cancel() }
        var stream = try SignedStream(key: key)
        try stream.next(delta: 250_000, source: SourceStatement(id: "eastron:SDM630:1", identity: .read))
        let swap = MeterReplacement(old: "eastron:SDM630:1", new: "eastron:SDM630:2", atMillis: stream.startMillis + 1_000,
                                    oldImport: MilliwattHours(1_000_250_000), oldExport: nil, newImport: MilliwattHours(10_000), newExport: nil)
        try stream.next(delta: 0, source: SourceStatement(id: "eastron:SDM630:2", identity: .mismatch, replacement: swap))
        try stream.next(delta: 250_000, source: SourceStatement(id: "eastron:SDM630:2", identity: .mismatch))
        for record in stream.records { try publisher.send(record) }
        #expect(await eventually { await consumer.counters.stored == 3 })
        #expect(await consumer.counters.meterReplacements == 1)
    }

    @Test func unverifiableAndMisaddressedReadingsAreRejectedAndKept() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let publisher = try await Publisher(broker)
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
        let consumer = LedgerConsumer(store: store, client: testClient(broker, "ledger"),
                                      configuration: LedgerConsumerConfiguration(trust: TrustFollower(store: TrustStore(), keys: KeySet([key.publicKey]), path: nil), replay: fastReplays))
        let running = Task { await consumer.run() }
        defer { running.cancel() }
        #expect(await eventually { await consumer.subscriptionsAcknowledged == 1 })   // fixed keys: the readings filter only

        var stream = try SignedStream(key: key)
        try stream.next(2)
        var stranger = try SignedStream(key: SigningKey.generate(.eddsa), meter: "pv")
        try stranger.next()
        var tampered = stream.records[1]
        let at = tampered.bytes.count - 10
        tampered.bytes[at] = tampered.bytes[at] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        try publisher.send(stream.records[0])
        try publisher.send(tampered)                                               // signature broken
        try publisher.send(stranger.records[0])                                    // unknown key
        try publisher.send(stream.records[1], topic: "metergate/v1/gw-1/other/reading")   // wrong topic
        // Received counts at arrival; stored counts once the batch is committed (at the next tick), so wait for both.
        #expect(await eventually { let c = await consumer.counters; return c.received == 4 && c.stored + c.rejected == 4 })
        let c = await consumer.counters
        #expect(c.stored == 1 && c.rejected == 3)
        let counts = try await store.counts()
        #expect(counts.readings == 1 && counts.rejected == 3)
        running.cancel()
        await running.value
        await publisher.client.shutdown()
    }

    @Test func aSharedSubscriptionSplitsTheReadingsBetweenTwoConsumersOfOneLedger() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let publisher = try await Publisher(broker)
        let path = dir.file("ledger.db")
        var consumers: [LedgerConsumer] = []
        var tasks: [Task<Void, Never>] = []
        for name in ["a", "b"] {
            let store = try await SQLiteLedgerStore.open(path: path)                    // one file, two connections
            let configuration = LedgerConsumerConfiguration(gateway: "gw-1", shareGroup: "settlement", trust: TrustFollower(store: TrustStore(), keys: KeySet([key.publicKey]), path: nil), replay: fastReplays)
            #expect(configuration.readingFilter == "$share/settlement/metergate/v1/gw-1/+/reading")
            let consumer = LedgerConsumer(store: store, client: testClient(broker, "ledger-\(name)"), configuration: configuration)
            consumers.append(consumer)
            tasks.append(Task { await consumer.run() })
        }
        defer { for t in tasks { t.cancel() } }
        for c in consumers { #expect(await eventually { await c.subscriptionsAcknowledged == 1 }) }

        var stream = try SignedStream(key: key)
        try stream.next(40)
        for r in stream.records { try publisher.send(r) }
        let reader = try await SQLiteLedgerStore.open(path: path)
        #expect(try await eventually { try await reader.counts().readings == 40 })
        // A consumer counts a batch once its commit has returned: a moment after the rows are there.
        #expect(await eventually { let a = await consumers[0].counters, b = await consumers[1].counters; return a.stored + b.stored + a.duplicates + b.duplicates >= 40 })
        let a = await consumers[0].counters, b = await consumers[1].counters
        // Each reading went to one consumer of the group: both got some, none got one twice.
        #expect(a.received > 0 && b.received > 0, "a: \(a), b: \(b)")
        #expect(a.received + b.received == 40 && a.stored + b.stored == 40 && a.duplicates + b.duplicates == 0)
        #expect(try await reader.refreshedGaps(of: stream.records[0].record.stream).isEmpty)
        for t in tasks { t.cancel(); await t.value }
        await publisher.client.shutdown()
    }
}

@Suite(.timeLimit(.minutes(5))) struct ResumeTests {
    let key = SigningKey.generate(.eddsa)

    @Test func gapsLeftByAnEarlierRunAreAskedForAtStart() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        var old = try SignedStream(key: key, epoch: "OLD")
        try old.next(3)
        var stream = try SignedStream(key: key, epoch: "NEW")
        try stream.next(4)
        let store = try await SQLiteLedgerStore.open(path: dir.file("ledger.db"))
        // An old epoch with a gap (no longer reachable by cmd/replay), then the current one with seq 3 missing.
        for (i, r) in [old.records[0], old.records[2], stream.records[0], stream.records[1], stream.records[3]].enumerated() {
            _ = try await store.add(try verified(r, key: key), envelope: r.bytes, receivedMillis: Int64(i))
        }
        #expect(try await store.latestStreams() == [stream.records[0].record.stream])
        let watcher = testClient(broker, "watch")
        let requests = Inbox(watcher)
        watcher.subscribe("metergate/v1/gw-1/cmd/replay")
        watcher.start()
        #expect(await eventually { requests.subscriptions == 1 })
        let consumer = LedgerConsumer(store: store, client: testClient(broker, "ledger"),
                                      configuration: LedgerConsumerConfiguration(trust: TrustFollower(store: TrustStore(), keys: KeySet([key.publicKey]), path: nil), replay: fastReplays))
        let running = Task { await consumer.run() }
        #expect(await eventually { !requests.all.isEmpty })
        #expect(requests.all.map(\.text).allSatisfy { $0 == #"{"meter":"main","from":3,"to":3}"# }, "\(requests.all.map(\.text))")
        running.cancel()
        await running.value
        await watcher.shutdown()
    }
}
