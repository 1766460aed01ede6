// fleet-load: K simulated gateways, each with its own key, publishing valid signed, chained records of M meters to
// a broker, as a fleet does at interval boundaries; it answers the ledger's replay requests from what it signed.
// Used by the ledger's tests (two ledger processes sharing one PostgreSQL) and by bench/ledger/run.sh.
import ArgumentParser
import Delivery
import Foundation
import Logging
import MQTT
import MeterCore
import Signing
import Synchronization

@main
struct FleetLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-load",
        abstract: "Publish signed readings of K simulated gateways × M meters × N intervals to a broker, and answer replays.",
        discussion: """
            Each gateway gets its own Ed25519 (or P-256) key; --trust-out writes a trust store naming them for the ledger. \
            Records are signed first, then published interval by interval (every gateway's meters for interval 1, then 2, …), \
            QoS 1, at --rate records a second (0: as fast as the broker acknowledges). Replay requests on \
            metergate/v1/+/cmd/replay are answered from the signed records until --linger seconds after the last publish. \
            Prints one JSON line when publishing ends and one when it exits.
            """)

    @Option(help: "The broker, HOST:PORT.") var broker: String
    @Option(help: "Simulated gateways.") var gateways: Int = 50
    @Option(help: "Meters per gateway.") var meters: Int = 10
    @Option(help: "Intervals (records per meter).") var intervals: Int = 20
    @Option(help: "Records a second over the whole fleet; 0 for as fast as acknowledged.") var rate: Double = 0
    @Option(help: "Write a trust store with every gateway's key here.") var trustOut: String?
    @Option(help: "Key type: eddsa or es256.") var keyType: String = "eddsa"
    @Option(help: "Seconds to keep answering replay requests after the last publish.") var linger: Double = 0
    @Option(help: "Gateway ids are PREFIX-0001, PREFIX-0002, …") var prefix: String = "gw"
    @Option(help: "Unacknowledged publishes allowed at once.") var window: Int = 256
    @Option(help: "Wait until this file exists before publishing (so that consumers can subscribe first).") var waitFile: String?

    func run() async throws {
        guard gateways > 0, meters > 0, intervals > 0, gateways <= 100_000, meters <= 10_000, intervals <= 100_000,
              gateways * meters * intervals <= 20_000_000 else {
            throw ValidationError("--gateways, --meters and --intervals must be positive and give at most 20,000,000 records")
        }
        let parts = broker.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65_535).contains(port) else { throw ValidationError("--broker must be HOST:PORT") }
        let algorithm: SigningAlgorithm = keyType == "es256" ? .es256 : .eddsa
        let fleet = try Fleet(gateways: gateways, meters: meters, intervals: intervals, prefix: prefix, algorithm: algorithm)
        if let trustOut { try fleet.trustStore.save(path: trustOut) }

        let client = MQTTClient(configuration: MQTTClientConfiguration(
            host: String(parts[0]), port: port, clientID: "fleet-load-\(getpid())", keepaliveSeconds: 10,
            backoff: BackoffPolicy(initial: .milliseconds(100), maximum: .seconds(1)), maxInflight: window), logger: Logger(label: "fleet-load"))
        let progress = Progress()
        client.subscribe("metergate/v1/+/cmd/replay", qos: .atLeastOnce)
        client.start()
        let events = Task {
            for await event in client.events {
                switch event {
                case .connected: progress.connected.store(true, ordering: .relaxed)
                case .published: progress.acknowledged.add(1, ordering: .relaxed)
                case .message(let message): fleet.answer(message, on: client, progress: progress)
                default: break
                }
            }
        }
        while !progress.connected.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(10)) }
        if let waitFile { while !FileManager.default.fileExists(atPath: waitFile) { try await Task.sleep(for: .milliseconds(20)) } }

        let started = ContinuousClock.now
        var sent = 0
        for record in fleet.inPublishingOrder {
            if rate > 0 {
                let due = started + .seconds(Double(sent) / rate)
                if ContinuousClock.now < due { try await Task.sleep(until: due) }
            }
            while sent - progress.acknowledged.load(ordering: .relaxed) >= window { try await Task.sleep(for: .microseconds(200)) }
            _ = try client.publish(MQTTMessage(topic: record.topic, payload: record.bytes, qos: .atLeastOnce))
            sent += 1
        }
        while progress.acknowledged.load(ordering: .relaxed) < sent { try await Task.sleep(for: .milliseconds(1)) }
        let seconds = (ContinuousClock.now - started).seconds
        Self.report(["phase": "published", "records": sent, "seconds": seconds, "records_per_second": Double(sent) / max(seconds, 1e-9)])
        if linger > 0 { try? await Task.sleep(for: .seconds(linger)) }
        Self.report(["phase": "done", "records": sent, "replay_requests": progress.replayRequests.load(ordering: .relaxed),
                     "replayed": progress.replayed.load(ordering: .relaxed)])
        events.cancel()
        await client.shutdown()
    }

    static func report(_ fields: [String: Any]) {
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data()
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// Counters the event task and the publishing loop share.
final class Progress: Sendable {
    let connected = Atomic<Bool>(false)
    let acknowledged = Atomic<Int>(0)
    let replayRequests = Atomic<Int>(0)
    let replayed = Atomic<Int>(0)
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
