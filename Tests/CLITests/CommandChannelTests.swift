import Foundation
import TestSupport
import Testing

/// The real gateway against a publisher with nothing but broker access: `cmd/replay` messages built to trap,
/// overflow, amplify or linger retained. The gateway keeps running, answers each on `replay/result`, and
/// re-publishes no more than the requests' bounds allow.
@Suite(.serialized, .timeLimit(.minutes(5))) struct CommandChannelTests {
    @Test(.timeLimit(.minutes(3)))
    func hostileReplayRequestsNeitherStopTheGatewayNorAmplify() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let meters = try SimulatedMeters(logPath: dir.file("sim.log"))
        let port = meters.port
        let key = dir.file("signing.key")
        #expect(try runProcess(try metergateBinary(), ["keygen", "--out", key]).status == 0)
        let sub = which("mosquitto_sub") ?? "/usr/bin/mosquitto_sub"
        let pub = which("mosquitto_pub") ?? "/usr/bin/mosquitto_pub"
        let readings = try BackgroundProcess(sub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", "metergate/v1/cc-gw/a/reading"],
                                             logPath: dir.file("readings.txt"))
        defer { readings.stop() }
        let results = try BackgroundProcess(sub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "metergate/v1/cc-gw/replay/result"],
                                            logPath: dir.file("results.txt"))
        defer { results.stop() }
        let config = dir.write("gw.yaml", """
            gateway: { id: cc-gw, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            metrics: { enabled: false }
            buses:
              - { id: sim, tcp: { host: 127.0.0.1, port: \(port) } }
            meters:
              - { id: a, bus: sim, unit: 1, profile: eastron-sdm630, poll: 200ms }
            mqtt: { host: 127.0.0.1, port: \(broker.port) }
            signing: { key: \(key) }
            """)
        func startGateway(_ log: String) throws -> BackgroundProcess {
            try BackgroundProcess(try metergateBinary(), ["run", "--config", config, "--boards", "\(repositoryRoot)/boards",
                                                          "--profiles", "\(repositoryRoot)/profiles"], logPath: dir.file(log))
        }
        func received() -> [String] {
            ((try? String(contentsOfFile: dir.file("readings.txt"), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        func answers() -> [String] {
            ((try? String(contentsOfFile: dir.file("results.txt"), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        func send(_ payload: String, retain: Bool = false) throws {
            let r = try runProcess(pub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", "metergate/v1/cc-gw/cmd/replay", "-m", payload]
                                   + (retain ? ["-r"] : []))
            #expect(r.status == 0, "\(r.stderr)")
        }
        var gateway = try startGateway("gw-1.log")
        defer { gateway.stop() }
        #expect(waitUntil(timeout: 60) { received().count >= 4 }, "\(gateway.log)")

        // Integers built to trap or overflow, an unknown meter, and a retained command.
        try send(#"{"meter":"a","from":1,"to":18446744073709551615}"#)
        for _ in 0..<3 { try send(#"{"meter":"a","from":1000,"to":4611686018427387904}"#) }
        try send(#"{"meter":"nope","from":1,"to":2}"#)
        try send(#"{"meter":"a","from":1,"to":3}"#, retain: true)
        #expect(waitUntil(timeout: 20) { answers().count >= 6 }, "answers: \(answers())\n\(gateway.log)")
        let first = answers()
        #expect(first.contains { $0.contains(#""outcome":"refused""#) && $0.contains("beyond the highest seq") }, "\(first)")
        #expect(first.contains { $0.contains(#""outcome":"clipped""#) && $0.contains(#""from":1000"#) && $0.contains(#""to":10999"#) }, "\(first)")
        #expect(first.filter { $0.contains(#""outcome":"merged""#) }.count == 2, "\(first)")
        #expect(first.contains { $0.contains("no meter 'nope'") }, "\(first)")
        #expect(first.contains { $0.contains("a retained command is ignored") }, "\(first)")
        #expect(gateway.isRunning, "\(gateway.log)")

        // 500 identical requests for a million records: the stream is re-published about once, not 500 times.
        let held = Set(received()).count
        let flood = Array(repeating: #"{"meter":"a","from":1,"to":1000000}"#, count: 500).joined(separator: "\n") + "\n"
        let r = try runProcess(pub, ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", "metergate/v1/cc-gw/cmd/replay", "-l"], stdin: flood)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(waitUntil(timeout: 30) { received().count - Set(received()).count >= held }, "no replay arrived: \(gateway.log)")
        #expect(waitUntil(timeout: 20) { gateway.log.contains("replies_suppressed_before") }, "\(gateway.log)")
        #expect(gateway.isRunning, "\(gateway.log)")

        // Restarted with the retained command still on the broker: the broker does not hand it over (MQTT 5: retain
        // handling "never"), so nothing is replayed from the broker's memory, and readings go on.
        #expect(gateway.stop(signal: SIGTERM, timeout: 30) == 0, "\(gateway.log)")
        let before = received().count
        gateway = try startGateway("gw-2.log")
        #expect(waitUntil(timeout: 60) { received().count >= before + 3 }, "\(gateway.log)")
        #expect(!gateway.log.contains("replay request"), "\(gateway.log)")
        #expect(gateway.stop(signal: SIGTERM, timeout: 30) == 0, "\(gateway.log)")

        // The gateway has stopped: everything it ever re-published is in the subscriber's file (mosquitto_sub
        // writes each message as it arrives; the farewell above came after the last PUBACK).
        let all = received()
        let duplicates = all.count - Set(all).count
        #expect(duplicates >= held && duplicates <= 3 * held, "\(duplicates) re-published for a stream of \(held) records")
    }
}
