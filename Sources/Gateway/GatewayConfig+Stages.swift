import MQTT

/// The config's MQTT section as the client's settings: mapped here once, for every caller.
extension MQTTConfig {
    /// The client of a gateway: `status` online/offline (retained, and the last will), the retained `keys`
    /// document, TLS and credentials as configured. Reconnects back off up to 15 s: a backlog waits at most that
    /// long after the broker is back, and the jitter spreads a fleet.
    public func clientConfiguration(host: String, gateway: String, password: String?, topics: MeterGateTopics,
                                    keys: [UInt8]) -> MQTTClientConfiguration {
        MQTTClientConfiguration(
            host: host, port: port, clientID: clientID ?? "metergate-\(gateway)", username: username, password: password,
            tls: caFile.map { MQTTTLSConfiguration(caFile: $0, certFile: certFile, keyFile: keyFile) },
            keepaliveSeconds: Int(keepalive.components.seconds),
            will: topics.offline, birthMessages: [topics.online, topics.keysMessage(keys)], farewellMessages: [topics.offline],
            backoff: BackoffPolicy(initial: .milliseconds(500), maximum: .seconds(15)), maxInflight: inflightWindow)
    }
}
