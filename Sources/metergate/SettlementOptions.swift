import ArgumentParser
import Foundation
import MQTT
import Signing

/// How a settlement tool (`tail`, `ledger`) reaches the broker: plaintext or TLS (with a client certificate),
/// with or without a username and password. TLS verifies the broker's chain and host name as the gateway does.
struct BrokerOptions: ParsableArguments {
    @Option(help: "The broker: mqtt://HOST:PORT, mqtts://HOST[:PORT] (TLS, default port 8883), or HOST:PORT.")
    var broker: String = "mqtt://127.0.0.1:1883"

    @Option(name: .customLong("ca-file"), help: "CA certificates (PEM) that sign the broker's certificate; implies TLS.")
    var caFile: String?

    @Option(name: .customLong("cert-file"), help: "A client certificate (PEM) for brokers that require one (with --key-file).")
    var certFile: String?

    @Option(name: .customLong("key-file"), help: "The client certificate's private key (PEM).")
    var keyFile: String?

    @Option(help: "MQTT username.")
    var username: String?

    @Option(name: .customLong("password-file"), help: "A file holding the MQTT password (mode 0600; first line).")
    var passwordFile: String?

    /// The client settings for `clientID`, or a usage error naming the option that is wrong.
    func clientConfiguration(clientID: String, backoff: BackoffPolicy) throws -> MQTTClientConfiguration {
        var rest = Substring(broker)
        var secure = false
        if rest.hasPrefix("mqtts://") { rest = rest.dropFirst(8); secure = true } else if rest.hasPrefix("mqtt://") { rest = rest.dropFirst(7) }
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
        let expected = "--broker '\(broker)': expected mqtt://HOST:PORT or mqtts://HOST[:PORT]"
        guard (1...2).contains(parts.count), !parts[0].isEmpty, !parts[0].contains("/") else { throw Failure.usage(expected) }
        var port = secure ? 8883 : 1883
        if parts.count == 2 {
            guard let p = Int(parts[1]), (1...65535).contains(p) else { throw Failure.usage(expected) }
            port = p
        } else if !secure && !broker.hasPrefix("mqtt://") {
            throw Failure.usage(expected)
        }
        if certFile != nil || keyFile != nil {
            guard certFile != nil, keyFile != nil else { throw Failure.usage("--cert-file and --key-file go together") }
        }
        for (name, path) in [("--ca-file", caFile), ("--cert-file", certFile), ("--key-file", keyFile)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) { throw Failure.usage("\(name) \(path): cannot read") }
        }
        var tls: MQTTTLSConfiguration?
        if secure || caFile != nil {
            guard let caFile else {
                throw Failure.usage("--broker \(broker) speaks TLS: give --ca-file with the CA that signed the broker's certificate")
            }
            tls = MQTTTLSConfiguration(caFile: caFile, certFile: certFile, keyFile: keyFile)
        } else if certFile != nil {
            throw Failure.usage("--cert-file needs TLS: use an mqtts:// broker and --ca-file")
        }
        var password: String?
        if let passwordFile {
            guard username != nil else { throw Failure.usage("--password-file needs --username") }
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw Failure.usage("--password-file \(passwordFile): cannot read")
            }
            password = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        }
        return MQTTClientConfiguration(host: String(parts[0]), port: port, clientID: clientID, username: username, password: password,
                                       tls: tls, backoff: backoff)
    }
}

/// Which keys a settlement tool believes: a trust store (each key for its gateway, rotations followed and
/// remembered) and/or keys given for every gateway. One of the two is required.
struct TrustOptions: ParsableArguments {
    @Option(help: "A trust store: for each gateway, the public keys trusted for it (metergate trust add). Rotations announced on the keys topic are followed and saved to it.")
    var trust: String?

    @Option(help: "Public keys trusted for every gateway (JWK, JWK Set, PEM); repeatable. Prefer --trust.")
    var key: [String] = []

    /// The trust store and the keys, or a usage error saying what is missing and how to get it.
    func load(command: String) throws -> (store: TrustStore, keys: KeySet) {
        guard trust != nil || !key.isEmpty else {
            throw Failure.usage("""
                \(command) needs to know which keys to trust: give --trust FILE (a trust store; make one at commissioning with \
                `metergate trust add --trust FILE --gateway GW --key PUBLIC_KEY`, the key `metergate keygen` printed for that \
                gateway) or --key KEY (trusted for every gateway). Keys on the broker's keys topic are announcements, never trust.
                """)
        }
        var keys = KeySet()
        for file in key {
            do { keys.formUnion(try KeySet.load(path: file)) } catch { throw Failure.usage("--key \(error)") }
        }
        var store = TrustStore()
        if let trust {
            do { store = try TrustStore.load(path: trust) } catch { throw Failure.usage("--trust \(error)") }
        }
        return (store, keys)
    }
}
