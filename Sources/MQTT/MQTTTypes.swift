/// MQTT delivery guarantee.
public enum MQTTQoS: Int32, Sendable, Hashable, CaseIterable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2
}

/// A message to publish, or one received on a subscription.
public struct MQTTMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: MQTTQoS
    public var retain: Bool

    public init(topic: String, payload: [UInt8], qos: MQTTQoS = .atLeastOnce, retain: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }

    public init(topic: String, text: String, qos: MQTTQoS = .atLeastOnce, retain: Bool = false) {
        self.init(topic: topic, payload: Array(text.utf8), qos: qos, retain: retain)
    }

    /// The payload as UTF-8 text (invalid bytes replaced).
    public var text: String { String(decoding: payload, as: UTF8.self) }
}

/// TLS settings: the CA that signed the broker's certificate, and optionally a client certificate.
public struct MQTTTLSConfiguration: Sendable, Hashable {
    public var caFile: String
    public var certFile: String?
    public var keyFile: String?

    public init(caFile: String, certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }
}

/// Everything one ``MQTTClient`` needs to connect and stay connected.
public struct MQTTClientConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var clientID: String
    public var username: String?
    public var password: String?
    public var tls: MQTTTLSConfiguration?
    /// Keepalive interval in seconds.
    public var keepaliveSeconds: Int
    /// The last will (for MeterGate: `offline`, retained, on the status topic).
    public var will: MQTTMessage?
    /// Published first on every accepted connection (for MeterGate: `online` on status, the public keys).
    public var birthMessages: [MQTTMessage]
    /// Published just before a requested disconnect (for MeterGate: `offline` on status).
    public var farewellMessages: [MQTTMessage]
    /// The protocol tried first; a broker that refuses it gets 3.1.1.
    public var protocolVersion: MQTTProtocolVersion
    public var backoff: BackoffPolicy
    /// How long to wait for CONNACK after the TCP (and TLS) connection is up.
    public var connectTimeout: Duration
    /// How many QoS 1 messages libmosquitto may have unacknowledged at once (`MOSQ_OPT_SEND_MAXIMUM`).
    /// The publisher never hands it more than this, so libmosquitto never queues.
    public var maxInflight: Int

    public init(host: String, port: Int, clientID: String, username: String? = nil, password: String? = nil,
                tls: MQTTTLSConfiguration? = nil, keepaliveSeconds: Int = 30, will: MQTTMessage? = nil,
                birthMessages: [MQTTMessage] = [], farewellMessages: [MQTTMessage] = [],
                protocolVersion: MQTTProtocolVersion = .v5, backoff: BackoffPolicy = BackoffPolicy(),
                connectTimeout: Duration = .seconds(10), maxInflight: Int = 64) {
        self.host = host
        self.port = port
        self.clientID = clientID
        self.username = username
        self.password = password
        self.tls = tls
        self.keepaliveSeconds = keepaliveSeconds
        self.will = will
        self.birthMessages = birthMessages
        self.farewellMessages = farewellMessages
        self.protocolVersion = protocolVersion
        self.backoff = backoff
        self.connectTimeout = connectTimeout
        self.maxInflight = maxInflight
    }
}

/// One accepted connection.
public struct MQTTSession: Sendable, Hashable {
    /// Increases with every connection attempt of the client; message ids are only unique within one.
    public var id: UInt64
    public var protocolVersion: MQTTProtocolVersion
    /// The broker's Receive Maximum (MQTT 5), or nil when it sent none.
    public var receiveMaximum: Int?
}

/// A QoS 1/2 message handed to libmosquitto: acknowledged by a ``MQTTEvent/published(session:mid:reasonCode:)``
/// with the same session and mid.
public struct PublishTicket: Sendable, Hashable {
    public var session: UInt64
    public var mid: Int32
}

/// What the client reports, in the order libmosquitto saw it. Copied off the library's thread at once.
public enum MQTTEvent: Sendable {
    /// The broker accepted the connection; birth messages and subscriptions are already queued.
    case connected(MQTTSession)
    /// An attempt failed; the client tries again after `retryIn`.
    case connectFailed(MosquittoError, retryIn: Duration?)
    /// An accepted connection ended. Unacknowledged messages of this session will never be acknowledged.
    case disconnected(session: UInt64, reason: String)
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) for `mid`. `reasonCode` ≥ 0x80 is an MQTT 5 refusal (not delivered).
    case published(session: UInt64, mid: Int32, reasonCode: Int32)
    /// A message on a subscription.
    case message(MQTTMessage)
    /// SUBACK.
    case subscribed(session: UInt64, mid: Int32, grantedQoS: [Int32])
}
