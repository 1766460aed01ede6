internal import CMosquitto

/// A one-shot, blocking check that a broker accepts an MQTT connection: used by `metergate check` and by
/// tests. Call it off the cooperative pool (it blocks up to `timeoutSeconds`).
public enum MQTTConnectionProbe {
    /// Filled in by the CONNACK callback, on the calling thread (`mosquitto_loop` runs callbacks inline).
    private final class Outcome {
        var connackCode: Int32?
    }

    /// Connects to `host:port`, waits for CONNACK, disconnects. Returns when the broker accepted.
    /// The corresponding C functions are `mosquitto_connect`, `mosquitto_loop` and `mosquitto_connect_callback_set`.
    public static func connect(host: String, port: Int, clientID: String = "metergate-probe", timeoutSeconds: Int = 5) throws(MosquittoError) {
        MosquittoLibrary.initialize()
        let outcome = Outcome()
        let context = "\(host):\(port)"
        guard let mosq = mosquitto_new(clientID, true, Unmanaged.passUnretained(outcome).toOpaque()) else {
            throw MosquittoError(function: "mosquitto_new", code: Int32(MOSQ_ERR_NOMEM.rawValue), context: context)
        }
        defer { mosquitto_destroy(mosq) }
        mosquitto_connect_callback_set(mosq) { _, obj, rc in
            guard let obj else { return }
            Unmanaged<Outcome>.fromOpaque(obj).takeUnretainedValue().connackCode = rc
        }
        var rc = mosquitto_connect(mosq, host, Int32(port), 10)
        guard rc == Int32(MOSQ_ERR_SUCCESS.rawValue) else { throw .from(rc, function: "mosquitto_connect", context: context) }
        var waited = 0
        while outcome.connackCode == nil && waited < timeoutSeconds * 10 {
            rc = mosquitto_loop(mosq, 100, 1)
            guard rc == Int32(MOSQ_ERR_SUCCESS.rawValue) else { throw .from(rc, function: "mosquitto_loop", context: context) }
            waited += 1
        }
        guard let connack = outcome.connackCode else {
            throw MosquittoError(function: "mosquitto_loop", code: Int32(MOSQ_ERR_TIMEOUT.rawValue), context: "\(context): no CONNACK within \(timeoutSeconds) s")
        }
        guard connack == 0 else {
            throw MosquittoError(function: "mosquitto_connect", code: Int32(MOSQ_ERR_CONN_REFUSED.rawValue),
                                 context: "\(context): broker refused: \(String(cString: mosquitto_connack_string(connack)))")
        }
        _ = mosquitto_disconnect(mosq)
    }
}
