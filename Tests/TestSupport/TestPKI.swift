import Foundation

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl, for brokers that speak
/// TLS and require a client certificate.
public struct TestPKI: Sendable {
    public let dir: TemporaryDirectory
    public var ca: String { dir.file("ca.crt") }
    /// A CA that signed nothing here: a client trusting only it must refuse the broker.
    public var otherCA: String { dir.file("other-ca.crt") }
    public var clientCertificate: String { dir.file("client.crt") }
    public var clientKey: String { dir.file("client.key") }

    public init() throws {
        dir = TemporaryDirectory("pki")
        guard let openssl = which("openssl") else { throw TestEnvironmentError("openssl is not installed (apt-get install openssl)") }
        func run(_ args: [String]) throws {
            let result = try runProcess(openssl, args, currentDirectory: dir.path)
            guard result.status == 0 else { throw TestEnvironmentError("openssl \(args.joined(separator: " ")) failed: \(result.stderr)") }
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try run(["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=MeterGate Test CA"])
        try run(["req", "-x509"] + ec + ["-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "2", "-subj", "/CN=Somebody Else CA"])
        _ = dir.write("server.ext", "subjectAltName=IP:127.0.0.1\n")
        for name in ["server", "client"] {
            try run(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name == "server" ? "127.0.0.1" : "gw")"])
            try run(["x509", "-req", "-in", "\(name).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "\(name).crt", "-days", "2"]
                    + (name == "server" ? ["-extfile", "server.ext"] : []))
        }
    }

    /// mosquitto settings for a TLS listener that requires a client certificate signed by ``ca``.
    public var brokerConfig: String {
        """
        cafile \(dir.file("ca.crt"))
        certfile \(dir.file("server.crt"))
        keyfile \(dir.file("server.key"))
        require_certificate true
        user root
        """
    }
}
