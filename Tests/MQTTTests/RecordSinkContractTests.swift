import Delivery
import Foundation
import MQTT
import Synchronization
import TestSupport
import Testing

/// What ``OutboxPublisher`` relies on from any ``RecordSink``, checked against both implementations: the MQTT
/// sink on a real mosquitto, and the in-memory sink the drain-logic tests use.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RecordSinkContractTests {
    /// One sink and its far end.
    protocol Harness {
        var sink: any RecordSink { get }
        /// Makes the far end take a session (the MQTT sink connects by itself once started).
        func openSession()
        /// The far end acknowledges these records (the broker does so by itself).
        func acknowledge(_ tickets: [SinkTicket])
        /// A replay request sent to the gateway through the far end.
        func sendReplayRequest(_ payload: [UInt8]) throws
        /// What the far end received, per meter, in order.
        func received() -> [String: [[UInt8]]]
        func close()
    }

    final class MemoryHarness: Harness {
        let memory = InMemorySink(name: "memory", maxInflight: 8)
        var sink: any RecordSink { memory }
        func openSession() { memory.connect() }
        func acknowledge(_ tickets: [SinkTicket]) { memory.acknowledge(tickets) }
        func sendReplayRequest(_ payload: [UInt8]) throws { memory.receiveReplayRequest(payload) }
        func received() -> [String: [[UInt8]]] { Dictionary(grouping: memory.sent, by: \.meter).mapValues { $0.map(\.bytes) } }
        func close() {}
    }

    final class MQTTHarness: Harness {
        let broker: MosquittoBroker
        let topics = MeterGateTopics(gateway: "gw")
        let mqtt: MQTTSink
        let settlement: MQTTClient
        let log: EventLog

        init() async throws {
            broker = try MosquittoBroker()
            mqtt = MQTTSink(client: MQTTClient(configuration: clientConfiguration(broker, id: "gw", topics: topics, window: 8)), topics: topics)
            settlement = MQTTClient(configuration: clientConfiguration(broker, id: "settlement"))
            log = EventLog(settlement)
            settlement.subscribe("metergate/v1/gw/+/reading", qos: .atLeastOnce)
            settlement.start()
            let log = self.log
            #expect(await eventually(timeout: 10) { !log.subscribedSessions.isEmpty })
        }

        var sink: any RecordSink { mqtt }
        func openSession() {}
        func acknowledge(_ tickets: [SinkTicket]) {}
        func sendReplayRequest(_ payload: [UInt8]) throws {
            try settlement.publish(MQTTMessage(topic: topics.replayRequests, payload: payload, qos: .atLeastOnce))
        }
        func received() -> [String: [[UInt8]]] {
            var byMeter: [String: [[UInt8]]] = [:]
            for message in log.messages {
                if let meter = topics.meter(ofReadingTopic: message.topic) { byMeter[meter, default: []].append(message.payload) }
            }
            return byMeter
        }
        func close() {}
    }

    /// The sink's events, as the publisher reads them.
    final class Events: Sendable {
        let all = Mutex<[SinkEvent]>([])
        var connected: [SinkSession] { all.withLock { $0.compactMap { if case .connected(let s) = $0 { s } else { nil } } } }
        var acknowledged: [(SinkTicket, String?)] {
            all.withLock { $0.compactMap { if case .acknowledged(let t, let r) = $0 { (t, r) } else { nil } } }
        }
        var replayRequests: [[UInt8]] {
            all.withLock { $0.compactMap { if case .replayRequest(let p, false) = $0 { p } else { nil } } }
        }
    }

    static func check(_ harness: any Harness) async throws {
        let sink = harness.sink
        let events = Events()
        let inbox = BatchInbox<SinkEvent?>()
        let reader = Task {
            while true {
                let batch = await inbox.next()
                if batch.isEmpty { break }
                for case let event? in batch { events.all.withLock { $0.append(event) } }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            sink.feed(inbox, in: &group, events: { $0 }, tick: nil, every: .milliseconds(50))
            #expect(throws: (any Error).self, "nothing is taken before a session") { try sink.send(meter: "m", bytes: [1]) }
            sink.acceptReplayRequests()
            sink.start()
            harness.openSession()
            #expect(await eventually(timeout: 10) { !events.connected.isEmpty }, "\(sink.name): a session is reported")
            let session = events.connected.first?.id
            var tickets: [SinkTicket] = []
            for i in 0..<20 {
                tickets.append(try! sink.send(meter: "m\(i % 2)", bytes: Array("record \(i)".utf8)))
            }
            #expect(Set(tickets).count == 20, "\(sink.name): each record gets its own ticket")
            #expect(tickets.allSatisfy { $0.session == session })
            harness.acknowledge(tickets)
            // Only the tickets count: a transport may acknowledge its own messages too (MQTT's retained `online`).
            let ours = Set(tickets)
            let acknowledged = { events.acknowledged.filter { ours.contains($0.0) } }
            #expect(await eventually(timeout: 10) { acknowledged().count == 20 }, "\(sink.name): every record is acknowledged")
            #expect(Set(acknowledged().map(\.0)) == ours && acknowledged().allSatisfy { $0.1 == nil })
            // The far end got the bytes, per meter in the order sent.
            let received = harness.received()
            #expect(received["m0"] == (0..<10).map { Array("record \($0 * 2)".utf8) })
            #expect(received["m1"] == (0..<10).map { Array("record \($0 * 2 + 1)".utf8) })
            let request = Array(#"{"meter":"m0","from":1,"to":3}"#.utf8)
            try! harness.sendReplayRequest(request)
            #expect(await eventually(timeout: 10) { events.replayRequests == [request] }, "\(sink.name): a replay request is reported")
            await sink.shutdown()
            inbox.finish()
            group.cancelAll()
        }
        await reader.value
        harness.close()
    }

    @Test func theInMemorySinkKeepsTheContract() async throws {
        try await Self.check(MemoryHarness())
    }

    @Test func theMQTTSinkKeepsTheContractOnMosquitto() async throws {
        try await Self.check(try await MQTTHarness())
    }
}
