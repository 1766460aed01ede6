import Foundation
import TestSupport
import Testing

/// A configured meter that never answers: the gateway goes on with the others, and `/health` answers 503
/// naming it (not 200 because some other meter answers).
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
    }
}
