import MQTT
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct MosquittoTests {
    @Test func reportsTheLibraryVersion() {
        #expect(MosquittoLibrary.version.hasPrefix("2."))
    }

    @Test func connectsToARealBroker() async throws {
        let broker = try MosquittoBroker()
        await #expect(throws: Never.self) {
            try await Task.detached { try MQTTConnectionProbe.connect(host: "127.0.0.1", port: broker.port) }.value
        }
        #expect(broker.log.contains("New client connected"), "\(broker.log)")
    }

    @Test func aRefusedConnectionIsAClearError() async throws {
        let port = freeLoopbackPort()
        let error = await #expect(throws: MosquittoError.self) {
            try await Task.detached { try MQTTConnectionProbe.connect(host: "127.0.0.1", port: port, timeoutSeconds: 2) }.value
        }
        #expect(error?.function == "mosquitto_connect")
        #expect(error?.description.contains("127.0.0.1:\(port)") == true)
        #expect(error?.message.lowercased().contains("refused") == true)
    }
}
