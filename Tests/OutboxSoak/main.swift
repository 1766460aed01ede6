import ArgumentParser
import Crypto
import Delivery
import Foundation
import MQTT
import MeterCore
import Outbox

/// `outbox-soak`: a test tool, not part of the shipped gateway. Appends chained test records (SHA-256 of
/// "meter|epoch|seq|prev|soak") to a real outbox and publishes them, so tests can SIGKILL a real appending and
/// publishing process at random moments and check that nothing is lost or reused.
@main
struct OutboxSoak: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox-soak",
        abstract: "Append and publish chained test records until --total are stored and delivered.")

    @Option(help: "The outbox database file.") var db: String
    @Option(help: "Broker host.") var host: String = "127.0.0.1"
    @Option(help: "Broker port.") var port: Int
    @Option(help: "Gateway id (topic level).") var gateway: String = "soak"
    @Option(help: "Number of meters, named m0, m1, ...") var meters: Int = 3
    @Option(help: "Stop appending once the store holds this many records in all, then exit when all are delivered.") var total: Int
    @Option(help: "Milliseconds between appends.") var intervalMs: Int = 2
    @Option(help: "Records per append transaction.") var batch: Int = 1
    @Option(help: "The publisher's inflight window.") var window: Int = 32

    func run() async throws {
        let store = try await SQLiteOutbox.open(path: db, configuration: OutboxConfiguration())
        let topics = MeterGateTopics(gateway: gateway)
        let client = MQTTClient(configuration: MQTTClientConfiguration(
            host: host, port: port, clientID: "metergate-\(gateway)", keepaliveSeconds: 5, will: topics.offline,
            birthMessages: [topics.online], farewellMessages: [topics.offline],
            backoff: BackoffPolicy(initial: .milliseconds(100), maximum: .seconds(1)), maxInflight: window))
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics),
                                        configuration: .init(window: window, acceptReplayRequests: false))
        let running = Task { try await publisher.run() }
        var stored = try await store.stats().streams.reduce(0) { $0 + Int($1.lastSeq) }
        print("soak: epoch \(store.epoch), \(stored) records stored at start")
        while stored < total {
            let count = min(batch, total - stored)
            let requests = (0..<count).map { i -> AppendRequest in
                let meter = "m\((stored + i) % meters)"
                return AppendRequest(meter: meter, build: Self.record(meter))
            }
            _ = try await store.append(requests)
            stored += count
            publisher.recordsAppended()
            if intervalMs > 0 { try await Task.sleep(for: .milliseconds(intervalMs)) }
        }
        while true {
            let stats = try await store.stats()
            if stats.pending == 0 && stats.inflight == 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        running.cancel()
        try await running.value
        await store.close()
        print("soak: all \(stored) records delivered")
    }

    static func record(_ meter: String) -> RecordBuilder {
        { position in
            let prev = position.prev.map { String(format: "%02x", $0) }.joined()
            let bytes = Array("\(meter)|\(position.epoch)|\(position.seq)|\(prev)|soak".utf8)
            return (bytes, Array(SHA256.hash(data: bytes)))
        }
    }
}
