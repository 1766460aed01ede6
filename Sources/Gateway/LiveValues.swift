import MQTT
import MeterCore

/// Instantaneous values on `metergate/v1/<gateway>/<meter>/live`, QoS 0, for dashboards and commissioning.
/// Not signed and not stored: settlement uses the signed readings; a live value lost in an outage is gone.
public struct LiveValues: Sendable {
    let client: MQTTClient
    let topics: MeterGateTopics

    public init(client: MQTTClient, topics: MeterGateTopics) {
        self.client = client
        self.topics = topics
    }

    /// The JSON of one sample: the time and every quantity the meter gave, in base units (W, Wh, V, A, Hz).
    static func json(_ sample: Sample) -> String {
        let fields = sample.values.sorted { $0.key < $1.key }.compactMap { key, value -> String? in
            value.isFinite ? "\"\(key.rawValue)\":\(value)" : nil
        }
        return "{\"t_ms\":\(sample.time.wallMillis)" + (fields.isEmpty ? "" : "," + fields.joined(separator: ",")) + "}"
    }

    /// Publishes one sample, if connected (QoS 0 is never queued for later).
    public func publish(_ sample: Sample) {
        _ = try? client.publish(MQTTMessage(topic: topics.live(meter: sample.meter.rawValue), text: Self.json(sample), qos: .atMostOnce))
    }
}
