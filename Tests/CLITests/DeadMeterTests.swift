import Foundation
import TestSupport
import Testing

/// A configured meter that never answers: the gateway goes on with the others, `/health` answers 503 naming it
/// (not 200 because some other meter answers), and its stream has a `gap` record for every interval.
@Suite(.serialized, .timeLimit(.minutes(3))) struct DeadMeterTests {
    @Test func healthNamesAMeterThatNeverAnswers() throws {
        let curl = try #require(which("curl"), "curl is missing")
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let meters = try SimulatedMeters(logPath: dir.file("sim.log"))
        let key = dir.file("signing.key")
        #expect(try runProcess(try metergateBinary(), ["keygen", "--out", key]).status == 0)
        let metricsPort = freeLoopbackPort()
        let config = dir.write("gw.yaml", """
            gateway: { id: dead-gw, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            metrics: { listen: "127.0.0.1:\(metricsPort)" }
            buses:
              - { id: sim, tcp: { host: 127.0.0.1, port: \(meters.port) }, timeout: 100ms }
            meters:
              - { id: alive, bus: sim, unit: 1, profile: eastron-sdm630, poll: 200ms }
              - { id: gone, bus: sim, unit: 9, profile: eastron-sdm630, poll: 200ms }
            mqtt: { host: 127.0.0.1, port: \(broker.port) }
            signing: { key: \(key) }
            """)
        let gateway = try BackgroundProcess(try metergateBinary(), ["run", "--config", config, "--boards", "\(repositoryRoot)/boards",
                                                                    "--profiles", "\(repositoryRoot)/profiles"], logPath: dir.file("gw.log"))
        defer { gateway.stop() }
        func health() -> String {
            (try? runProcess(curl, ["-s", "-w", " %{http_code}", "http://127.0.0.1:\(metricsPort)/health"]).stdout) ?? ""
        }
        // Within its threshold (three polls and 10 s) the silent meter is not named yet; after it, it is.
        #expect(waitUntil(timeout: 60) { health().contains("gone has not answered for") }, "\(health())\n\(gateway.log)")
        let answer = health()
        #expect(answer.hasSuffix(" 503") && !answer.contains("alive has not answered"), "\(answer)")
        #expect(gateway.log.contains("polled alive"), "\(gateway.log)")
        #expect(gateway.stop(signal: SIGTERM, timeout: 30) == 0, "\(gateway.log)")
        // Every interval of the dead meter is a signed gap with no samples, one after another, and verifies.
        let export = try runProcess(try metergateBinary(), ["outbox", "export", "--db", "\(dir.path)/state/outbox.sqlite", "--meter", "gone"])
        #expect(export.status == 0, "\(export.stderr)")
        let payloads = export.stdout.split(separator: "\n").compactMap { line -> [String: Any]? in
            var b64 = String(line.split(separator: ".")[1]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while b64.count % 4 != 0 { b64 += "=" }
            return Data(base64Encoded: b64).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        }
        let alive = try runProcess(try metergateBinary(), ["outbox", "export", "--db", "\(dir.path)/state/outbox.sqlite", "--meter", "alive"])
        let aliveCount = alive.stdout.split(separator: "\n").count
        #expect(payloads.count >= 10 && payloads.count >= aliveCount - 2, "\(payloads.count) gap records, \(aliveCount) of the live meter")
        #expect(payloads.allSatisfy { $0["quality"] as? String == "gap" && $0["samples"] as? Int == 0 && $0["import_mwh"] as? Int == 0 })
        let starts = payloads.compactMap { $0["start_ms"] as? Int }, ends = payloads.compactMap { $0["end_ms"] as? Int }
        #expect(zip(ends, starts.dropFirst()).allSatisfy { $0 == $1 }, "one interval after another")
        let file = dir.write("gone.jws", export.stdout)
        let verify = try runProcess(try metergateBinary(), ["verify", "--key", key, "--from-start", file])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }
}
