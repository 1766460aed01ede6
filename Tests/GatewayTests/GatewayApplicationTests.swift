import Foundation
import Gateway
import Logging
import MQTT
import MeterCore
import Modbus
import Signing
import Simulator
import Synchronization
import TestSupport
import Testing

/// The gateway as `metergate run` wires it, in this process: a simulated meter served over real libmodbus TCP,
/// a real mosquitto, and a settlement client that verifies every record it receives.
@Suite(.serialized, .timeLimit(.minutes(5))) struct GatewayApplicationTests {
    @Test func theWiredGatewayPublishesVerifiableChainedReadingsOfTheMeterItPolls() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let profile = try MeterProfile.load(path: "\(repositoryRoot)/profiles/eastron-sdm630.yaml")
        let server = try ModbusTCPServer(port: 0, handler: SimulatedBus(meters: [
            3: SimulatedMeter(profile: profile, curve: .constant(watts: 3600), importWattHours: 50_000),
        ]))
        defer { server.stop() }
        let yaml = """
            gateway: { id: gw-e2e, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            buses:
              - { id: b1, tcp: { host: 127.0.0.1, port: \(server.port) }, timeout: 500ms }
            meters:
              - { id: m1, bus: b1, unit: 3, profile: eastron-sdm630, poll: 250ms }
            mqtt: { host: 127.0.0.1, port: \(broker.port) }
            metrics: { enabled: false }
            signing: { key: \(dir.path)/signing.key }
            """
        let config = try GatewayConfig.load(path: dir.write("gateway.yaml", yaml), boardDirectories: ["\(repositoryRoot)/boards"],
                                            profileDirectories: ["\(repositoryRoot)/profiles"])
        let key = SigningKey.generate(.eddsa)

        let received = Mutex<[[UInt8]]>([])
        let settlement = MQTTClient(configuration: MQTTClientConfiguration(host: "127.0.0.1", port: broker.port, clientID: "settlement"))
        settlement.subscribe("metergate/v1/gw-e2e/m1/reading", qos: .atLeastOnce)
        let listening = Task {
            for await event in settlement.events {
                if case .message(let message) = event { received.withLock { $0.append(message.payload) } }
            }
        }
        settlement.start()

        var settings = GatewayApplication.Settings()
        settings.shutdownSignals = []
        settings.drainBound = .seconds(2)
        let application = try await GatewayApplication.make(config: config, key: key, keys: Array(KeySet([key.publicKey]).document.utf8),
                                                            password: nil, settings: settings, logger: Logger(label: "test"))
        let running = Task { try await application.run() }
        let deadline = ContinuousClock.now + .seconds(30)
        while received.withLock({ $0.count }) < 4, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        running.cancel()
        try await running.value
        await settlement.shutdown()
        listening.cancel()

        let verifier = RecordVerifier(keys: KeySet([key.publicKey]))
        let records = try received.withLock { $0 }.map { try verifier.verify($0).get().record }
        #expect(records.count >= 4)
        #expect(records.map(\.seq) == Array(1...UInt64(records.count)), "one chain, from seq 1, each once, in order")
        #expect(records.allSatisfy { $0.gateway.rawValue == "gw-e2e" && $0.meter.rawValue == "m1" })
        // 3.6 kW for a whole 1 s interval is 1 Wh; the first interval starts with the gateway, part way.
        for record in records.dropFirst() where record.endMillis - record.startMillis == 1000 {
            #expect(abs(record.importDelta.rawValue - 1000) <= 250, "seq \(record.seq): \(record.importDelta.rawValue) mWh")
        }
    }
}
