import Delivery
import ArgumentParser
import Foundation
import Gateway
import Logging
import MeterCore
import MQTT
import Outbox

/// `metergate replay`: re-publishes a range of a meter's delivered records from the outbox.
struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-publish a range of a meter's records from the outbox.",
        discussion: """
            Re-publishes delivered records still in retention, QoS 1, on the meter's reading topic, with a \
            progress line (records/s, remaining). Records not yet delivered are left to the running gateway. \
            Safe beside a running gateway: it uses its own MQTT client id and leaves the outbox's states alone.
            """)

    @OptionGroup var location: OutboxLocation
    @Option(help: "The meter whose records to re-publish.") var meter: String
    @Option(help: "The first seq.") var from: UInt64
    @Option(help: "The last seq (default: --from).") var to: UInt64?
    @Option(help: "Broker host (with --db; --config gives it).") var host: String?
    @Option(help: "Broker port (with --db; --config gives it).") var port: Int?
    @Option(help: "Gateway id for the topics (with --db; --config gives it).") var gateway: String?
    @Option(help: "Records in flight at once.") var window: Int = 256

    func validate() throws {
        guard from >= 1 else { throw ValidationError("--from must be at least 1 (seqs start at 1)") }
        guard from <= (to ?? from) else { throw ValidationError("--from \(from) is after --to \(to ?? from)") }
        if location.db != nil {
            guard host != nil, port != nil, gateway != nil else { throw ValidationError("with --db, give --host, --port and --gateway") }
        }
    }

    func run() async throws {
        GatewayLogHandler.bootstrap(level: .warning)
        let request = ReplayRequest(meter: meter, seqs: from...(to ?? from))
        let store = try await location.open()
        let (clientConfiguration, topics) = try mqtt()
        let client = MQTTClient(configuration: clientConfiguration)
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics),
                                        configuration: .init(window: window, drainPending: false, acceptReplayRequests: false))
        publisher.requestReplay(request)
        let running = Task { try await publisher.run() }
        let started = ContinuousClock.now
        let total = request.seqs.upperBound - request.seqs.lowerBound + 1
        var lastPrint = ContinuousClock.now
        while true {
            try await Task.sleep(for: .milliseconds(200))
            let progress = await publisher.replayProgress()
            let done = progress.active == 0 && progress.inflight == 0
            if done || ContinuousClock.now - lastPrint >= .seconds(1) {
                lastPrint = .now
                let seconds = max(0.001, Double((ContinuousClock.now - started).components.attoseconds) / 1e18 + Double((ContinuousClock.now - started).components.seconds))
                let rate = Double(progress.acknowledged) / seconds
                FileHandle.standardError.write(Data("\rreplay \(request): \(progress.acknowledged)/\(total) acknowledged, \(Int(rate)) records/s, \(progress.remaining.addingReportingOverflow(UInt64(progress.inflight)).partialValue) remaining, \(progress.skipped) not in the outbox as delivered   ".utf8))
            }
            if done { break }
        }
        FileHandle.standardError.write(Data("\n".utf8))
        running.cancel()
        try await running.value
        let progress = await publisher.replayProgress()
        print("replayed \(progress.acknowledged) record(s) of meter \(meter) seq \(request.seqs.lowerBound)...\(request.seqs.upperBound); \(progress.skipped) not available")
        if progress.acknowledged == 0 { throw Failure.run("nothing to replay: no delivered records of meter \(meter) in seq \(request.seqs.lowerBound)...\(request.seqs.upperBound)") }
    }

    /// The MQTT client settings: from the config, or from --host/--port/--gateway.
    private func mqtt() throws -> (MQTTClientConfiguration, MeterGateTopics) {
        let id = "metergate-replay-\(ProcessInfo.processInfo.processIdentifier)"
        if let config = try location.gatewayConfig() {
            let m = config.mqtt
            guard let host = m.host else { throw Failure.usage("the config has no mqtt.host to replay to") }
            var password: String?
            if let file = m.passwordFile {
                do { password = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) } catch {
                    throw Failure.run("cannot read the MQTT password file \(file): \(error.localizedDescription)")
                }
            }
            let tls = m.caFile.map { MQTTTLSConfiguration(caFile: $0, certFile: m.certFile, keyFile: m.keyFile) }
            let seconds = Int(m.keepalive.components.seconds)
            return (MQTTClientConfiguration(host: host, port: m.port, clientID: id, username: m.username, password: password, tls: tls,
                                            keepaliveSeconds: max(5, seconds), maxInflight: window),
                    MeterGateTopics(gateway: config.gateway.rawValue))
        }
        return (MQTTClientConfiguration(host: host!, port: port!, clientID: id, maxInflight: window), MeterGateTopics(gateway: gateway!))
    }
}
