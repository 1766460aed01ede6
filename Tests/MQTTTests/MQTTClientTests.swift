import Foundation
import MQTT
import Outbox
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct MQTTClientTests {
    @Test func publishesQoS1ToMosquittoSubAndKeepsTheRetainedStatus() async throws {
        let broker = try MosquittoBroker()
        let topics = MeterGateTopics(gateway: "gw")
        let log = TemporaryDirectory()
        defer { log.cleanup() }
        let sub = try #require(which("mosquitto_sub"))
        // stdbuf: mosquitto_sub's stdout is a file here; line buffering lets the test see SUBACK at once.
        let stdbuf = try #require(which("stdbuf"))
        let peer = try BackgroundProcess(stdbuf, ["-oL", sub, "-h", "127.0.0.1", "-p", "\(broker.port)", "-i", "peer", "-q", "1", "-v", "-d",
                                               "-t", "metergate/v1/gw/+/reading", "-C", "20"], logPath: log.file("sub.log"))
        #expect(await eventually(timeout: 10) { peer.log.contains("SUBACK") })

        let client = MQTTClient(configuration: clientConfiguration(broker, id: "gw", topics: topics))
        let events = EventLog(client)
        client.start()
        #expect(await eventually(timeout: 10) { !events.connectedSessions.isEmpty })
        let session = try #require(events.connectedSessions.first)
        #expect(session.protocolVersion == .v5)
        var tickets: [PublishTicket] = []
        for i in 1...20 {
            tickets.append(try client.publish(MQTTMessage(topic: topics.reading(meter: i % 2 == 0 ? "m2" : "m1"), text: "record \(i)")))
        }
        #expect(Set(tickets.map(\.mid)).count == 20)
        #expect(await eventually(timeout: 10) {
            Set(events.all.compactMap { if case .published(let s, let mid, let rc) = $0, s == session.id, rc < 0x80 { return mid } else { return nil } })
                .isSuperset(of: tickets.map(\.mid))
        })
        #expect(await eventually(timeout: 10) { !peer.isRunning })
        let lines = peer.log.split(separator: "\n").filter { $0.hasPrefix("metergate/v1/gw/") }.map(String.init)
        #expect(lines == (1...20).map { "metergate/v1/gw/\($0 % 2 == 0 ? "m2" : "m1")/reading record \($0)" })

        let status = try runProcess(sub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", topics.status, "-C", "1", "-W", "5"])
        #expect(status.stdout == "online\n")
        await client.shutdown()
        let after = try runProcess(sub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", topics.status, "-C", "1", "-W", "5"])
        #expect(after.stdout == "offline\n")
        #expect(events.all.contains { if case .disconnected = $0 { return true } else { return false } })
    }

    /// A consumer fed before the client starts gets every event in its own stream, straight from the callbacks,
    /// and the stream finishes when the client shuts down; one fed after the start gets them forwarded.
    @Test(arguments: [true, false])
    func aConsumerStreamGetsEveryEventInOrderAndEndsWithTheClient(fedBeforeStart: Bool) async throws {
        let broker = try MosquittoBroker()
        let client = MQTTClient(configuration: clientConfiguration(broker, id: "fed-\(fedBeforeStart)", topics: MeterGateTopics(gateway: "gw")))
        let (input, continuation) = AsyncStream.makeStream(of: MQTTEvent?.self)
        var received: [MQTTEvent] = []
        var tickets: [PublishTicket] = []
        await withTaskGroup(of: Void.self) { group in
            if !fedBeforeStart { client.start() }
            client.feed(continuation, in: &group, events: { $0 }, tick: nil, every: .seconds(3600))
            if fedBeforeStart { client.start() }
            for await next in input {
                guard let event = next else { continue }
                received.append(event)
                if case .connected = event {
                    for i in 1...10 { if let ticket = try? client.publish(MQTTMessage(topic: "t/\(i)", text: "\(i)")) { tickets.append(ticket) } }
                }
                if case .published(_, let mid, _) = event, mid == tickets.last?.mid {
                    let client = client
                    group.addTask { await client.shutdown() }
                }
            }
            group.cancelAll()
        }
        let ours = Set(tickets.map(\.mid))
        let mids = received.compactMap { if case .published(_, let mid, let rc) = $0, rc < 0x80, ours.contains(mid) { return mid } else { return nil } }
        #expect(mids.count == 10 && mids == mids.sorted(), "every PUBACK of the ten, in order: \(mids)")
        #expect(received.contains { if case .disconnected = $0 { return true } else { return false } })
    }

    @Test func publishingWithoutAConnectionIsRefusedAndNothingIsQueued() throws {
        let port = freeLoopbackPort()
        let client = MQTTClient(configuration: MQTTClientConfiguration(host: "127.0.0.1", port: port, clientID: "nobody"))
        let error = #expect(throws: MosquittoError.self) { try client.publish(MQTTMessage(topic: "t", text: "x")) }
        #expect(error?.function == "mosquitto_publish")
        #expect(error?.message.contains("not currently connected") == true, "\(String(describing: error))")
    }

    @Test func aBrokerThatIsNotThereIsRetriedWithBackoffUntilItComes() async throws {
        let port = freeLoopbackPort()
        let client = MQTTClient(configuration: MQTTClientConfiguration(host: "127.0.0.1", port: port, clientID: "patient", backoff: testBackoff))
        let events = EventLog(client)
        client.start()
        #expect(await eventually(timeout: 10) { events.failures.count >= 3 })
        #expect(events.failures.first?.description.contains("127.0.0.1:\(port)") == true)
        let broker = try MosquittoBroker(port: port)
        #expect(await eventually(timeout: 20) { !events.connectedSessions.isEmpty },
                "last failure: \(String(describing: events.failures.last)); broker: \(broker.log)")
        await client.shutdown()
    }

    @Test func usernameAndPasswordAreCheckedByTheBroker() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let tool = try #require(which("mosquitto_passwd"))
        try runProcess(tool, ["-c", "-b", dir.file("passwd"), "gw", "right"])
        let broker = try MosquittoBroker(extraConfig: "password_file \(dir.file("passwd"))\nuser root")
        let good = MQTTClient(configuration: clientConfiguration(broker, id: "good", username: "gw", password: "right"))
        let goodEvents = EventLog(good)
        good.start()
        #expect(await eventually(timeout: 10) { !goodEvents.connectedSessions.isEmpty }, "\(goodEvents.failures)")
        let bad = MQTTClient(configuration: clientConfiguration(broker, id: "bad", username: "gw", password: "wrong"))
        let badEvents = EventLog(bad)
        bad.start()
        #expect(await eventually(timeout: 10) { !badEvents.failures.isEmpty })
        await bad.shutdown()
        await good.shutdown()
        #expect(badEvents.connectedSessions.isEmpty)
        #expect(badEvents.failures.first?.description.contains("broker refused the MQTT 5 connection: Not authorized") == true,
                "\(badEvents.failures)")
    }

    @Test func speaksMQTT311WhenAskedTo() async throws {
        let broker = try MosquittoBroker()
        var configuration = clientConfiguration(broker, id: "old")
        configuration.protocolVersion = .v311
        let client = MQTTClient(configuration: configuration)
        let events = EventLog(client)
        client.start()
        #expect(await eventually(timeout: 10) { !events.connectedSessions.isEmpty })
        #expect(events.connectedSessions.first?.protocolVersion == .v311)
        #expect(events.connectedSessions.first?.receiveMaximum == nil)
        let ticket = try client.publish(MQTTMessage(topic: "old/topic", text: "3.1.1"))
        #expect(await eventually(timeout: 10) {
            events.all.contains { if case .published(let s, let mid, _) = $0 { return s == ticket.session && mid == ticket.mid } else { return false } }
        })
        await client.shutdown()
    }

    @Test func subscriptionsAreRenewedOnEveryConnection() async throws {
        let broker = try MosquittoBroker()
        let client = MQTTClient(configuration: clientConfiguration(broker, id: "listener"))
        let events = EventLog(client)
        client.subscribe("test/+/x")
        client.start()
        #expect(await eventually(timeout: 10) { events.subscribedSessions.count == 1 })
        let pub = try #require(which("mosquitto_pub"))
        try runProcess(pub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "test/a/x", "-m", "one", "-q", "1"])
        #expect(await eventually(timeout: 10) { events.messages.map(\.text) == ["one"] })
        try broker.restart()
        #expect(await eventually(timeout: 10) { events.subscribedSessions.count == 2 })
        try runProcess(pub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "test/b/x", "-m", "two", "-q", "1"])
        #expect(await eventually(timeout: 10) { events.messages.map(\.text) == ["one", "two"] })
        #expect(events.messages.last?.topic == "test/b/x")
        await client.shutdown()
    }
}

extension TestPKI {
    var clientTLS: MQTTTLSConfiguration { MQTTTLSConfiguration(caFile: ca, certFile: clientCertificate, keyFile: clientKey) }
}

@Suite(.timeLimit(.minutes(5))) struct MQTTTLSTests {

    @Test func connectsOverTLSWithAClientCertificate() async throws {
        let pki = try TestPKI()
        defer { pki.dir.cleanup() }
        let broker = try MosquittoBroker(extraConfig: pki.brokerConfig)
        let client = MQTTClient(configuration: clientConfiguration(broker, id: "tls-ok", tls: pki.clientTLS))
        let events = EventLog(client)
        client.start()
        #expect(await eventually(timeout: 10) { !events.connectedSessions.isEmpty }, "\(events.failures)")
        let ticket = try client.publish(MQTTMessage(topic: "tls/test", text: "over tls"))
        #expect(await eventually(timeout: 10) {
            events.all.contains { if case .published(let s, let mid, _) = $0 { return s == ticket.session && mid == ticket.mid } else { return false } }
        })
        await client.shutdown()
    }

    @Test func aBrokerCertificateFromAnotherCAIsRefusedWithAClearError() async throws {
        let pki = try TestPKI()
        defer { pki.dir.cleanup() }
        let broker = try MosquittoBroker(extraConfig: pki.brokerConfig)
        var tls = pki.clientTLS
        tls.caFile = pki.otherCA
        let client = MQTTClient(configuration: clientConfiguration(broker, id: "tls-wrong-ca", tls: tls))
        let events = EventLog(client)
        client.start()
        #expect(await eventually(timeout: 20) { !events.failures.isEmpty })
        await client.shutdown()
        #expect(events.connectedSessions.isEmpty)
        let error = try #require(events.failures.first)
        #expect(error.description.contains("certificate verify failed"), "\(error)")
        #expect(error.description.contains("127.0.0.1:\(broker.port)"), "\(error)")
    }

    @Test func aMissingCAFileIsReportedWithItsPath() async throws {
        let broker = try MosquittoBroker()
        let client = MQTTClient(configuration: clientConfiguration(broker, id: "tls-no-file", tls: MQTTTLSConfiguration(caFile: "/nonexistent/ca.pem")))
        let events = EventLog(client)
        client.start()
        #expect(await eventually(timeout: 10) { !events.failures.isEmpty })
        await client.shutdown()
        let error = try #require(events.failures.first)
        #expect(error.function == "mosquitto_tls_set")
        #expect(error.description.contains("/nonexistent/ca.pem"))
    }
}

@Suite(.timeLimit(.minutes(5))) struct MQTTProtocolFallbackTests {
    /// amqtt (PyPI) is an MQTT 3.1.1-only broker; it does not answer an MQTT 5 CONNECT for a minute. After three
    /// attempts in a row without a CONNACK, the client asks with 3.1.1.
    @Test func aBrokerWithoutMQTT5IsAskedAgainWith311() async throws {
        let amqtt = "\(repositoryRoot)/.venv/bin/amqtt"
        guard FileManager.default.isExecutableFile(atPath: amqtt) else {
            throw TestEnvironmentError("amqtt is not installed: run scripts/setup.sh")
        }
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let port = freeLoopbackPort()
        let config = dir.write("amqtt.yaml", "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:\(port)\n")
        let broker = try BackgroundProcess(amqtt, ["-c", config], logPath: dir.file("amqtt.log"))
        defer { broker.stop(signal: SIGKILL) }
        #expect(await eventually(timeout: 20) { isListening(port: port) }, "\(broker.log)")

        let client = MQTTClient(configuration: MQTTClientConfiguration(host: "127.0.0.1", port: port, clientID: "fallback", backoff: testBackoff,
                                                                       connectTimeout: .seconds(3)))
        let events = EventLog(client)
        client.start()
        #expect(await eventually(timeout: 45) { !events.connectedSessions.isEmpty }, "\(events.failures)")
        await client.shutdown()
        #expect(events.connectedSessions.first?.protocolVersion == .v311)
        let failures = events.failures.map(\.description)
        #expect(failures.count >= ReconnectStateMachine.attemptsBeforeSwitching, "\(failures)")
        #expect(failures.prefix(ReconnectStateMachine.attemptsBeforeSwitching).allSatisfy { $0.contains("no CONNACK within 3.0 seconds (MQTT 5)") }, "\(failures)")
    }
}
