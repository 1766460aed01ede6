import Foundation
import TestSupport
import Testing

/// The shipped broker ACL (`examples/mosquitto/acl`), enforced by a real mosquitto: each gateway writes only
/// its own tree and never its `cmd/`, reads only its `cmd/`, and only `settlement` sends commands.
///
/// "Must not arrive" is shown without sleeping: the forbidden messages are published first, then a marker
/// on a topic the subscriber may read; the broker handles publishes in order, so a subscriber that stops
/// after one message (`-C 1`) gets the marker only if nothing forbidden came before it.
@Suite(.timeLimit(.minutes(5))) struct BrokerACLTests {
    @Test(.timeLimit(.minutes(1)))
    func aGatewayPublishesItsReadingsKeysStatusLiveValuesAndReplayResults() throws {
        let fleet = try FleetBroker()
        let settlement = try fleet.subscribe(as: "settlement", "metergate/v1/#", count: 5)
        try fleet.publish(as: "gw1", "metergate/v1/gw1/m1/reading", "r1")
        try fleet.publish(as: "gw1", "metergate/v1/gw1/keys", "k1", retain: true)
        try fleet.publish(as: "gw1", "metergate/v1/gw1/status", "online", retain: true)
        try fleet.publish(as: "gw1", "metergate/v1/gw1/m1/live", "l1")
        try fleet.publish(as: "gw1", "metergate/v1/gw1/replay/result", "accepted")
        #expect(settlement.messages() == [
            "metergate/v1/gw1/m1/reading r1", "metergate/v1/gw1/keys k1", "metergate/v1/gw1/status online",
            "metergate/v1/gw1/m1/live l1", "metergate/v1/gw1/replay/result accepted",
        ], "\(fleet.log)")
    }

    @Test(.timeLimit(.minutes(1)))
    func aGatewayCannotPublishIntoAnotherGatewaysTree() throws {
        let fleet = try FleetBroker()
        let settlement = try fleet.subscribe(as: "settlement", "metergate/v1/#", count: 1)
        for topic in ["metergate/v1/gw2/m1/reading", "metergate/v1/gw2/keys", "metergate/v1/gw2/status", "metergate/v1/gw2/replay/result",
                      "metergate/v1/gw2/cmd/replay"] {
            try fleet.publish(as: "gw1", topic, "forged", retain: topic.hasSuffix("keys"))
        }
        try fleet.publish(as: "gw1", "metergate/v1/gw1/status", "marker")
        #expect(settlement.messages() == ["metergate/v1/gw1/status marker"], "\(fleet.log)")
    }

    @Test(.timeLimit(.minutes(1)))
    func aGatewayCannotPublishCommandsNotEvenToItself() throws {
        let fleet = try FleetBroker()
        let settlement = try fleet.subscribe(as: "settlement", "metergate/v1/#", count: 1)
        let gateway = try fleet.subscribe(as: "gw1", "metergate/v1/gw1/cmd/#", count: 1)
        // cmd/reading and cmd/live: a meter named "cmd" would otherwise open a way into cmd/.
        for topic in ["metergate/v1/gw1/cmd/replay", "metergate/v1/gw1/cmd/reading", "metergate/v1/gw1/cmd/live"] {
            try fleet.publish(as: "gw1", topic, "forged")
        }
        try fleet.publish(as: "settlement", "metergate/v1/gw1/cmd/replay", "marker")
        #expect(settlement.messages() == ["metergate/v1/gw1/cmd/replay marker"], "\(fleet.log)")
        #expect(gateway.messages() == ["metergate/v1/gw1/cmd/replay marker"], "\(fleet.log)")
    }

    @Test(.timeLimit(.minutes(1)))
    func eachGatewayReceivesSettlementsCommandsForItAndNothingElse() throws {
        let fleet = try FleetBroker()
        // Subscribing to everything is allowed; delivery is checked per message.
        let gw1 = try fleet.subscribe(as: "gw1", "metergate/v1/#", count: 1)
        let gw2 = try fleet.subscribe(as: "gw2", "metergate/v1/#", count: 1)
        try fleet.publish(as: "gw2", "metergate/v1/gw2/m1/reading", "r2")
        try fleet.publish(as: "gw1", "metergate/v1/gw1/m1/reading", "r1")
        try fleet.publish(as: "gw2", "metergate/v1/gw2/keys", "k2", retain: true)
        try fleet.publish(as: "settlement", "metergate/v1/gw2/cmd/replay", #"{"meter":"m1","from":3,"to":4}"#)
        try fleet.publish(as: "settlement", "metergate/v1/gw1/cmd/replay", #"{"meter":"m1","from":1,"to":2}"#)
        #expect(gw1.messages() == [#"metergate/v1/gw1/cmd/replay {"meter":"m1","from":1,"to":2}"#], "\(fleet.log)")
        #expect(gw2.messages() == [#"metergate/v1/gw2/cmd/replay {"meter":"m1","from":3,"to":4}"#], "\(fleet.log)")
    }

    @Test(.timeLimit(.minutes(1)))
    func settlementCannotPoseAsAGatewayNamedSettlement() throws {
        let fleet = try FleetBroker()
        let settlement = try fleet.subscribe(as: "settlement", "metergate/v1/#", count: 1)
        try fleet.publish(as: "settlement", "metergate/v1/settlement/m1/reading", "forged")
        try fleet.publish(as: "settlement", "metergate/v1/settlement/keys", "forged")
        try fleet.publish(as: "gw1", "metergate/v1/gw1/status", "marker")
        #expect(settlement.messages() == ["metergate/v1/gw1/status marker"], "\(fleet.log)")
    }

    @Test(.timeLimit(.minutes(1)))
    func anonymousClientsAndWrongPasswordsAreRefused() throws {
        let fleet = try FleetBroker()
        let settlement = try fleet.subscribe(as: "settlement", "metergate/v1/#", count: 1)
        let anonymous = try fleet.publish(as: nil, "metergate/v1/gw1/status", "forged")
        #expect(anonymous.status != 0 && anonymous.stderr.contains("not authorised"), "\(anonymous)")
        let wrong = try runProcess(fleet.pub, fleet.connection + ["-u", "gw1", "-P", "wrong", "-i", "wrong-password", "-q", "1",
                                                                  "-t", "metergate/v1/gw1/status", "-m", "forged"])
        #expect(wrong.status != 0 && wrong.stderr.contains("not authorised"), "\(wrong)")
        let listen = try runProcess(fleet.sub, fleet.connection + ["-i", "anonymous-sub", "-t", "metergate/v1/#", "-C", "1", "-W", "5"])
        #expect(listen.status != 0 && listen.stderr.contains("not authorised"), "\(listen)")
        try fleet.publish(as: "gw1", "metergate/v1/gw1/status", "marker")
        #expect(settlement.messages() == ["metergate/v1/gw1/status marker"], "\(fleet.log)")
    }

    /// The shipped `mosquitto.conf` and `ca.cnf` as the README uses them: certificates from the fleet CA,
    /// the CN as the MQTT username (a username the client sends is ignored), no client certificate no access.
    @Test(.timeLimit(.minutes(1)))
    func theShippedTLSConfigTakesTheUsernameFromTheClientCertificate() throws {
        guard let openssl = which("openssl") else { throw TestEnvironmentError("openssl is not installed (apt-get install openssl)") }
        guard let mosquitto = which("mosquitto") else { throw TestEnvironmentError("mosquitto is not installed (apt-get install mosquitto)") }
        let dir = TemporaryDirectory("metergate-ca")
        defer { dir.cleanup() }
        let examples = "\(repositoryRoot)/examples/mosquitto"
        let caConfig = try String(contentsOfFile: "\(examples)/ca.cnf", encoding: .utf8)
        #expect(caConfig.contains("subjectAltName   = DNS:broker.example.net"))
        dir.write("ca.cnf", caConfig.replacingOccurrences(of: "DNS:broker.example.net", with: "DNS:localhost, IP:127.0.0.1"))
        dir.write("index.txt", "")
        dir.write("serial", "1000\n")
        dir.write("crlnumber", "1000\n")
        try FileManager.default.createDirectory(atPath: dir.file("issued"), withIntermediateDirectories: false)
        func openSSL(_ arguments: [String]) throws {
            let r = try runProcess(openssl, arguments, currentDirectory: dir.path)
            #expect(r.status == 0, "openssl \(arguments.joined(separator: " ")): \(r.stderr)")
        }
        let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try openSSL(["req", "-x509"] + p256 + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=MeterGate fleet CA"])
        for (name, extensions) in [("broker", "broker"), ("gw1", "client"), ("gw2", "client"), ("settlement", "client")] {
            let cn = name == "broker" ? "localhost" : name
            try openSSL(["req", "-new"] + p256 + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(cn)"])
            try openSSL(["ca", "-config", "ca.cnf", "-batch", "-notext", "-extensions", extensions, "-in", "\(name).csr", "-out", "\(name).pem"])
        }

        let shipped = try String(contentsOfFile: "\(examples)/mosquitto.conf", encoding: .utf8)
        for line in ["allow_anonymous false", "acl_file /etc/mosquitto/metergate/acl", "listener 8883", "require_certificate true",
                     "use_identity_as_username true", "cafile /etc/mosquitto/metergate/ca.pem"] {
            #expect(shipped.contains("\n\(line)\n"), "mosquitto.conf lacks \(line)")
        }
        #expect(!shipped.contains("\nallow_anonymous true"), "mosquitto.conf must not allow anonymous clients")
        let port = freeLoopbackPort()
        let conf = shipped
            .replacingOccurrences(of: "acl_file /etc/mosquitto/metergate/acl", with: "acl_file \(examples)/acl")
            .replacingOccurrences(of: "/etc/mosquitto/metergate/", with: dir.path + "/")
            .replacingOccurrences(of: "\nlistener 8883\n", with: "\nlistener \(port) 127.0.0.1\n")
            + "\npersistence false\nlog_dest stderr\nlog_type all\nuser root\n"
        let broker = try BackgroundProcess(mosquitto, ["-c", dir.write("mosquitto.conf", conf)], logPath: dir.file("broker.log"))
        defer { broker.stop(signal: SIGKILL) }     // nothing to save; SIGTERM may be held by the inherited signal mask
        #expect(waitUntil(timeout: 10) { isListening(port: port) }, "mosquitto did not start: \(broker.log)")

        let fleet = try FleetBroker(connection: ["-h", "127.0.0.1", "-p", "\(port)", "--cafile", dir.file("ca.pem")],
                                    credentials: { ["--cert", dir.file("\($0).pem"), "--key", dir.file("\($0).key")] }, log: { broker.log })
        let settlement = try fleet.subscribe(as: "settlement", "metergate/v1/#", count: 2)
        try fleet.publish(as: "gw1", "metergate/v1/gw1/m1/reading", "r1")
        // gw1's certificate with the username gw2: still gw1, so gw2's tree is refused.
        let posing = try runProcess(fleet.pub, fleet.connection + fleet.credentials("gw1") + ["-u", "gw2", "-i", "posing", "-q", "1",
                                                                                              "-t", "metergate/v1/gw2/m1/reading", "-m", "forged"])
        try fleet.publish(as: nil, "metergate/v1/gw2/m1/reading", "no certificate")
        try fleet.publish(as: "gw1", "metergate/v1/gw1/status", "marker")
        #expect(settlement.messages() == ["metergate/v1/gw1/m1/reading r1", "metergate/v1/gw1/status marker"], "\(posing) \(broker.log)")
        let noCertificate = try runProcess(fleet.pub, fleet.connection + ["-i", "no-certificate", "-t", "metergate/v1/gw1/status", "-m", "x"])
        #expect(noCertificate.status != 0, "a client without a certificate got in: \(noCertificate)")
    }
}

/// mosquitto with the shipped ACL, and clients that run as one of its users: by default a plaintext loopback
/// listener with a password file for gw1, gw2 and settlement (password `pw-<user>`), anonymous clients refused.
private final class FleetBroker {
    let pub: String, sub: String, stdbuf: String
    /// Host, port (and TLS) options for mosquitto_pub/mosquitto_sub.
    let connection: [String]
    /// The options that make a client `user`.
    let credentials: (String) -> [String]
    private let logSource: () -> String
    private let broker: MosquittoBroker?
    private let directory = TemporaryDirectory("metergate-acl")
    private var subscribers: [BackgroundProcess] = []

    var log: String { logSource() }

    /// The default: a password file and the ACL on a broker of its own.
    convenience init() throws {
        let directory = TemporaryDirectory("metergate-acl-passwd")
        defer { directory.cleanup() }
        guard let passwd = which("mosquitto_passwd") else { throw TestEnvironmentError("mosquitto_passwd is missing (apt-get install mosquitto)") }
        let passwords = directory.file("passwd")
        for user in ["gw1", "gw2", "settlement"] {
            let r = try runProcess(passwd, (user == "gw1" ? ["-c"] : []) + ["-b", passwords, user, "pw-\(user)"])
            guard r.status == 0 else { throw TestEnvironmentError("mosquitto_passwd failed: \(r.stderr)") }
        }
        // Later lines win: these override the helper's `allow_anonymous true`. The broker reads the password
        // file at start, so the directory can go afterwards. `user root`: keep reading the files when run as root.
        let broker = try MosquittoBroker(extraConfig: """
            allow_anonymous false
            password_file \(passwords)
            acl_file \(repositoryRoot)/examples/mosquitto/acl
            user root
            """)
        try self.init(connection: ["-h", "127.0.0.1", "-p", "\(broker.port)"], credentials: { ["-u", $0, "-P", "pw-\($0)"] },
                      log: { broker.log }, broker: broker)
    }

    init(connection: [String], credentials: @escaping (String) -> [String], log: @escaping () -> String, broker: MosquittoBroker? = nil) throws {
        guard let pub = which("mosquitto_pub"), let sub = which("mosquitto_sub") else {
            throw TestEnvironmentError("mosquitto_pub/mosquitto_sub are missing (apt-get install mosquitto-clients)")
        }
        guard let stdbuf = which("stdbuf") else { throw TestEnvironmentError("stdbuf is missing (coreutils)") }
        (self.pub, self.sub, self.stdbuf) = (pub, sub, stdbuf)
        self.connection = connection
        self.credentials = credentials
        logSource = log
        self.broker = broker
    }

    /// Publishes at QoS 1 as `user` (nil: anonymous) and returns once the broker has answered: a refused
    /// publish is dropped by the broker, so this does not fail for it.
    @discardableResult
    func publish(as user: String?, _ topic: String, _ payload: String, retain: Bool = false) throws -> ProcessResult {
        try runProcess(pub, connection + (user.map(credentials) ?? []) + ["-i", "pub-\(user ?? "anonymous")-\(UInt32.random(in: 0...UInt32.max))",
                                                                         "-q", "1", "-t", topic, "-m", payload] + (retain ? ["-r"] : []))
    }

    /// A subscriber as `user` that stops after `count` messages (or 15 s); returns once the broker has granted
    /// the subscription, so everything published afterwards is checked against it.
    func subscribe(as user: String, _ filter: String, count: Int) throws -> Subscriber {
        let name = "sub-\(user)-\(subscribers.count)"
        // stdbuf: line-buffered output, so SUBACK shows in the log at once; -d prints it.
        let process = try BackgroundProcess(stdbuf, ["-oL", sub] + connection + credentials(user) + ["-i", name, "-q", "1", "-v", "-d", "-t", filter,
                                                                                                   "-C", "\(count)", "-W", "15"],
                                            logPath: directory.file("\(name).log"))
        subscribers.append(process)
        guard waitUntil(timeout: 10, { process.log.contains("SUBACK") }) else {
            throw TestEnvironmentError("\(name) got no SUBACK: \(process.log)\n\(log)")
        }
        return Subscriber(process: process)
    }

    deinit {
        for process in subscribers { process.stop() }
        directory.cleanup()
    }
}

private struct Subscriber {
    let process: BackgroundProcess

    /// The `topic payload` lines it received, once it has stopped (after its count, or its -W timeout).
    func messages() -> [String] {
        _ = waitUntil(timeout: 20) { !process.isRunning }
        return process.log.split(separator: "\n").filter { $0.hasPrefix("metergate/") }.map(String.init)
    }
}
