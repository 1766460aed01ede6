import Delivery
import Synchronization

/// The outbox's records over MQTT: each record a QoS 1 message on its meter's `<meter>/reading` topic, a
/// PUBACK its acknowledgement (a reason code ≥ 0x80 a refusal); replay requests on `cmd/replay` and their
/// answers on `replay/result`.
public final class MQTTSink: RecordSink {
    public let client: MQTTClient
    public let topics: MeterGateTopics
    public var name: String { "MQTT" }
    public var maxInflight: Int { client.configuration.maxInflight }
    /// Each meter's `<meter>/reading` topic, made once rather than for every record.
    private let readingTopics = Mutex<[String: String]>([:])

    public init(client: MQTTClient, topics: MeterGateTopics) {
        self.client = client
        self.topics = topics
    }

    public func feed<Input: Sendable>(_ inbox: BatchInbox<Input>, in group: inout TaskGroup<Void>,
                                      events: @escaping @Sendable (SinkEvent) -> Input, tick: Input, every interval: Duration) {
        let replayTopic = topics.replayRequests
        client.feed(inbox, in: &group, events: { events(Self.sinkEvent($0, replayTopic: replayTopic)) }, tick: tick, every: interval)
    }

    public func start() { client.start() }

    /// The corresponding C function is `mosquitto_publish`, through ``MQTTClient/publish(_:)``.
    public func send(meter: String, bytes: [UInt8]) throws -> SinkTicket {
        let topic = readingTopics.withLock { cache in
            if let topic = cache[meter] { return topic }
            let topic = topics.reading(meter: meter)
            cache[meter] = topic
            return topic
        }
        let ticket = try client.publish(MQTTMessage(topic: topic, payload: bytes, qos: .atLeastOnce))
        return SinkTicket(session: ticket.session, id: Int64(ticket.mid))
    }

    /// Subscribes to `cmd/replay`, ignoring retained messages: a command must never act from the broker's memory.
    public func acceptReplayRequests() {
        client.subscribe(topics.replayRequests, qos: .atLeastOnce, ignoreRetained: true)
    }

    /// Publishes the answer on `replay/result` at QoS 0.
    public func replyToReplay(_ payload: [UInt8]) {
        _ = try? client.publish(MQTTMessage(topic: topics.replayResults, payload: payload, qos: .atMostOnce))
    }

    public func shutdown() async { await client.shutdown() }

    static func sinkEvent(_ event: MQTTEvent, replayTopic: String) -> SinkEvent {
        switch event {
        case .connected(let session):
            return .connected(SinkSession(id: session.id, receiveMaximum: session.receiveMaximum, description: "\(session.protocolVersion)"))
        case .disconnected(let session, let reason):
            return .disconnected(session: session, reason: reason)
        case .published(let session, let mid, let reasonCode):
            return .acknowledged(SinkTicket(session: session, id: Int64(mid)),
                                 refusal: reasonCode >= 0x80 ? "PUBACK reason code \(reasonCode)" : nil)
        case .message(let message) where message.topic == replayTopic:
            return .replayRequest(payload: message.payload, retained: message.retain)
        case .message, .connectFailed, .subscribed:
            return .other
        }
    }
}
