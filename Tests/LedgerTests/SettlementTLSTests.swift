import Foundation
import Signing
import Testing
import TestSupport

/// `tail` and `ledger` reach a broker that speaks only TLS and requires a client certificate, checking the
/// broker's chain and host name as the gateway does.
@Suite(.serialized, .timeLimit(.minutes(5))) struct SettlementTLSTests {
    let key = SigningKey.generate(.eddsa)

    @Test(.timeLimit(.minutes(2)))
    func tailConnectsOverTLSWithAClientCertificateAndNotWithout() async throws {
        let pki = try TestPKI()
        defer { pki.dir.cleanup() }
        let broker = try MosquittoBroker(extraConfig: pki.brokerConfig)
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let publicKey = dir.write("gw.pub.pem", key.publicKey.pemRepresentation)
        let url = "mqtts://127.0.0.1:\(broker.port)"
        let tail = try BackgroundProcess(try metergateBinary(), [
            "tail", "--broker", url, "--ca-file", pki.ca, "--cert-file", pki.clientCertificate, "--key-file", pki.clientKey,
            "--key", publicKey, "--count", "2", "--timeout", "60"], logPath: dir.file("tail.log"))
        defer { _ = tail.stop() }
        // Without a client certificate, or trusting another CA, the broker and the tool refuse each other.
        let noCertificate = try BackgroundProcess(try metergateBinary(), [
            "tail", "--broker", url, "--ca-file", pki.ca, "--key", publicKey, "--count", "1", "--timeout", "4"], logPath: dir.file("nocert.log"))
        let wrongCA = try BackgroundProcess(try metergateBinary(), [
            "tail", "--broker", url, "--ca-file", pki.otherCA, "--cert-file", pki.clientCertificate, "--key-file", pki.clientKey,
            "--key", publicKey, "--count", "1", "--timeout", "4"], logPath: dir.file("wrongca.log"))

        var stream = try SignedStream(key: key)
        try stream.next(2)
        let pub = try #require(which("mosquitto_pub"))
        // Published over the same TLS listener once tail's subscription is in place (retried until tail has both).
        #expect(await eventually(30) {
            for record in stream.records {
                _ = try? runProcess(pub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "--cafile", pki.ca, "--cert", pki.clientCertificate,
                                          "--key", pki.clientKey, "-q", "1", "-t", "metergate/v1/gw-1/main/reading", "-m", record.text])
            }
            return !tail.isRunning
        }, "\(tail.log)")
        #expect(tail.stop() == 0, "\(tail.log)")
        #expect(tail.log.contains("gw-1/main  seq 1") && tail.log.contains("✓"), "\(tail.log)")
        #expect(tail.log.contains("kWh in") && tail.log.contains("kWh out"), "\(tail.log)")
        #expect(waitUntil(timeout: 20) { !noCertificate.isRunning && !wrongCA.isRunning })
        #expect(noCertificate.stop() == 1, "\(noCertificate.log)")
        #expect(noCertificate.log.contains("broker unreachable") && noCertificate.log.contains("0 of 1"), "\(noCertificate.log)")
        #expect(wrongCA.stop() == 1, "\(wrongCA.log)")
        #expect(wrongCA.log.contains("broker unreachable"), "\(wrongCA.log)")
    }

    @Test func badBrokerOptionsAreUsageErrorsNamingTheOption() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let publicKey = dir.write("gw.pub.pem", key.publicKey.pemRepresentation)
        for (arguments, expected) in [(["--broker", "mqtts://127.0.0.1:8883"], "--ca-file"),
                                      (["--broker", "mqtt://127.0.0.1:1883", "--cert-file", publicKey], "--key-file"),
                                      (["--broker", "ftp://x:1"], "expected mqtt://HOST:PORT"),
                                      (["--broker", "mqtt://127.0.0.1:1883", "--password-file", publicKey], "--username"),
                                      (["--broker", "mqtts://127.0.0.1", "--ca-file", dir.file("missing.pem")], "missing.pem")] {
            let result = try runProcess(try metergateBinary(), ["tail", "--key", publicKey] + arguments)
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            #expect(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
        }
    }
}
