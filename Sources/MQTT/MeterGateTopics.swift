/// The topic contract: everything under `metergate/v1/<gateway>/`.
public struct MeterGateTopics: Sendable, Hashable {
    public let gateway: String

    public init(gateway: String) { self.gateway = gateway }

    public var root: String { "metergate/v1/\(gateway)" }
    /// `<meter>/reading`: signed records, QoS 1.
    public func reading(meter: String) -> String { "\(root)/\(meter)/reading" }
    /// `<meter>/live`: instantaneous values, QoS 0.
    public func live(meter: String) -> String { "\(root)/\(meter)/live" }
    /// `status`: `online` retained on connect, `offline` as the retained last will.
    public var status: String { "\(root)/status" }
    /// `keys`: the retained public keys.
    public var keys: String { "\(root)/keys" }
    /// `cmd/replay`: requests to re-publish a range of a meter's seq.
    public var replayRequests: String { "\(root)/cmd/replay" }
    /// `replay/result`: the gateway's answer to each `cmd/replay` request (accepted, clipped, merged, refused), QoS 0.
    /// Outside `cmd/`, which only settlement may write.
    public var replayResults: String { "\(root)/replay/result" }

    /// The meter of a `<meter>/reading` topic of this gateway, or nil.
    public func meter(ofReadingTopic topic: String) -> String? {
        let prefix = root + "/"
        guard topic.hasPrefix(prefix), topic.hasSuffix("/reading") else { return nil }
        let meter = topic.dropFirst(prefix.count).dropLast("/reading".count)
        return meter.isEmpty || meter.contains("/") ? nil : String(meter)
    }

    /// The will, birth and farewell messages of the status topic, for ``MQTTClientConfiguration``.
    public var offline: MQTTMessage { MQTTMessage(topic: status, text: "offline", qos: .atLeastOnce, retain: true) }
    public var online: MQTTMessage { MQTTMessage(topic: status, text: "online", qos: .atLeastOnce, retain: true) }
    /// The retained public keys (a JWK set from the signing code), for the birth messages.
    public func keysMessage(_ payload: [UInt8]) -> MQTTMessage { MQTTMessage(topic: keys, payload: payload, qos: .atLeastOnce, retain: true) }
}
