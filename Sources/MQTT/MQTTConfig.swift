import ConfigFile
import Delivery

/// The gateway's broker connection: the config's `mqtt:` section, read here next to the client it sets up.
public struct MQTTConfig: Sendable, Hashable {
    /// nil: the demo starts a local broker on a free loopback port.
    public var host: String?
    public var port: Int
    public var clientID: String?
    public var username: String?
    public var passwordFile: String?
    public var caFile: String?
    public var certFile: String?
    public var keyFile: String?
    public var keepalive: Duration
    public var inflightWindow: Int
    public var live: Bool
    /// What `cmd/replay` requests may cost (`mqtt.replay`).
    public var replay = ReplayLimits()

    public init(host: String?, port: Int, clientID: String?, username: String?, passwordFile: String?, caFile: String?, certFile: String?,
                keyFile: String?, keepalive: Duration, inflightWindow: Int, live: Bool) {
        self.host = host
        self.port = port
        self.clientID = clientID
        self.username = username
        self.passwordFile = passwordFile
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.keepalive = keepalive
        self.inflightWindow = inflightWindow
        self.live = live
    }
}

extension MQTTConfig {
    /// Reads the `mqtt:` section; `resolve` makes a relative file path absolute (against the config file's folder).
    public static func read(_ node: ConfigNode?, resolve: (String) -> String) throws(ConfigError) -> MQTTConfig {
        var config = MQTTConfig(host: nil, port: 1883, clientID: nil, username: nil, passwordFile: nil, caFile: nil, certFile: nil,
                                keyFile: nil, keepalive: .seconds(30), inflightWindow: 64, live: false)
        guard let node else { return config }
        let m = try node.mapping()
        config.host = try m.optional("host")?.string()
        config.port = try m.optional("port")?.int(in: 1...65535) ?? (m.optional("ca_file") == nil ? 1883 : 8883)
        config.clientID = try m.optional("client_id")?.string()
        config.username = try m.optional("username")?.string()
        if let p = try m.optional("password_file")?.string() { config.passwordFile = resolve(p) }
        if let p = try m.optional("ca_file")?.string() { config.caFile = resolve(p) }
        if let p = try m.optional("cert_file")?.string() { config.certFile = resolve(p) }
        if let p = try m.optional("key_file")?.string() { config.keyFile = resolve(p) }
        config.keepalive = try m.optional("keepalive")?.duration() ?? .seconds(30)
        config.inflightWindow = try m.optional("inflight")?.int(in: 1...65535) ?? 64
        config.live = try m.optional("live")?.bool() ?? false
        if (config.certFile == nil) != (config.keyFile == nil) {
            throw node.error("cert_file and key_file go together: give both for a client certificate, or neither")
        }
        config.replay = try ReplayLimits.read(m.optional("replay"))
        try m.finish()
        return config
    }
}

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
