import Foundation
import TestSupport
import Testing

/// The gateway as a service: systemd notifications from the real process, and a SIGTERM in the middle of an
/// interval followed by a restart, which must continue every chain with no seq reused or skipped.
@Suite(.serialized, .timeLimit(.minutes(5))) struct LifecycleTests {
    @Test func restartMidIntervalContinuesEveryChainAndSystemdHearsReadyAndWatchdog() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let port = freeLoopbackPort()
        let simulator = try BackgroundProcess(try metergateBinary(), ["simulate", "--tcp", "127.0.0.1:\(port)", "--meter", "1=eastron-sdm630:2000", "--meter", "2=sunspec-203:700"],
                                              logPath: dir.file("sim.log"), currentDirectory: repositoryRoot)
        defer { simulator.stop() }
        #expect(waitUntil(timeout: 20) { isListening(port: port) }, "simulator: \(simulator.log)")
        let key = dir.file("signing.key")
        #expect(try runProcess(try metergateBinary(), ["keygen", "--out", key, "--algorithm", "ES256"]).status == 0)
        let received = dir.file("received.txt")
        let subscriber = try BackgroundProcess(which("mosquitto_sub") ?? "/usr/bin/mosquitto_sub",
                                               ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", "metergate/v1/life/+/reading"], logPath: received)
        defer { subscriber.stop() }
        // One meter signs JWS (ES256), the other OCMF: both envelopes through the whole service.
        let config = dir.write("gw.yaml", """
            gateway: { id: life, board: sim, state_dir: \(dir.path)/state, interval: 2s }
            metrics: { enabled: false }
            buses:
              - { id: sim, tcp: { host: 127.0.0.1, port: \(port) } }
            meters:
              - { id: jws-meter, bus: sim, unit: 1, profile: eastron-sdm630, poll: 200ms }
              - { id: ocmf-meter, bus: sim, unit: 2, profile: sunspec-203, poll: 200ms, envelope: ocmf }
            mqtt: { host: 127.0.0.1, port: \(broker.port) }
            signing: { key: \(key), algorithm: ES256 }
            """)
        func records() -> [String] {
            ((try? String(contentsOfFile: received, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        let arguments = ["run", "--config", config, "--boards", "\(repositoryRoot)/boards", "--profiles", "\(repositoryRoot)/profiles"]

        // First run, under a fake systemd.
        let notify = FakeNotifySocket(path: dir.file("notify"))
        let first = try BackgroundProcess(try metergateBinary(), arguments, logPath: dir.file("run1.log"),
                                          environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
        #expect(waitUntil(timeout: 60) { records().count >= 4 }, "first run: \(records().count) records\n\(first.log)")
        #expect(notify.messages.contains { $0.hasPrefix("READY=1") }, "\(notify.messages)")
        #expect(waitUntil(timeout: 10) { notify.messages.filter { $0.contains("WATCHDOG=1") }.count >= 2 }, "\(notify.messages)")
        // STATUS follows the monitor, which samples the outbox and broker every 2 s.
        #expect(waitUntil(timeout: 10) { notify.messages.contains { $0.contains("STATUS=2 meter(s); broker connected") } }, "\(notify.messages)")
        // Stop in the middle of an interval (interval 2 s: 0.9 s after a boundary).
        let now = Date().timeIntervalSince1970
        usleep(UInt32((2.0 - now.truncatingRemainder(dividingBy: 2.0) + 0.9).truncatingRemainder(dividingBy: 2.0) * 1_000_000))
        #expect(first.stop(signal: SIGTERM, timeout: 30) == 0, "\(first.log)")
        #expect(waitUntil(timeout: 5) { notify.messages.contains { $0.hasPrefix("STOPPING=1") } }, "\(notify.messages)")
        let beforeRestart = records().count

        // Second run: the chains continue from the saved state, the downtime is an explicit gap.
        sleep(2)
        let second = try BackgroundProcess(try metergateBinary(), arguments, logPath: dir.file("run2.log"))
        #expect(waitUntil(timeout: 60) { records().count >= beforeRestart + 4 }, "second run: \(records().count) records\n\(second.log)")
        #expect(second.log.contains("restored accounting state"), "\(second.log)")
        #expect(second.stop(signal: SIGTERM, timeout: 30) == 0, "\(second.log)")
        // The subscriber has written its last message whole (mosquitto_sub ends each with a newline).
        #expect(waitUntil(timeout: 5) { ((try? String(contentsOfFile: received, encoding: .utf8)) ?? "\n").hasSuffix("\n") })

        // Everything received verifies from seq 1 with no gap; redelivery after a restart is allowed.
        let verify = try runProcess(try metergateBinary(), ["verify", "--key", key, "--from-start", "--tolerate-redelivery", "--json", received])
        #expect(verify.status == 0, "verify: \(verify.stdout)\(verify.stderr)")
        // The outbox's own export is the whole of both chains, in order, and verifies strictly.
        var exported = ""
        for meter in ["jws-meter", "ocmf-meter"] {
            let export = try runProcess(try metergateBinary(), ["outbox", "export", "--db", "\(dir.path)/state/outbox.sqlite", "--meter", meter])
            #expect(export.status == 0, "\(export.stderr)")
            exported += export.stdout
        }
        let strict = try runProcess(try metergateBinary(), ["verify", "--key", key, "--from-start", "-"], stdin: exported)
        #expect(strict.status == 0, "strict verify of the outbox: \(strict.stdout)\(strict.stderr)")
        #expect(exported.hasPrefix("ey"), "JWS first: \(exported.prefix(100))")
        #expect(exported.contains("OCMF|"), "the OCMF meter's records are OCMF")
    }
}

@Suite(.timeLimit(.minutes(5))) struct BoardLEDTests {
    /// A gateway on a board whose status LED and S0 lines do not exist here: it says so once and runs on
    /// with its power rail.
    @Test func aMissingStatusLEDIsReportedAndTheGatewayRunsOn() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        try FileManager.default.createDirectory(atPath: dir.file("boards"), withIntermediateDirectories: true)
        _ = dir.write("boards/led-board.yaml", """
            board: led-board
            name: A board with a status LED on a chip this machine lacks
            status_led: { chip: gpiochip-not-here, line: 22 }
            s0_inputs: [ { name: s0-1, gpio: { chip: gpiochip-not-here, line: 17 } } ]
            rails: [hwmon]
            """)
        let key = dir.file("k.key")
        _ = try runProcess(try metergateBinary(), ["keygen", "--out", key])
        let config = dir.write("gw.yaml", """
            gateway: { id: led, board: led-board, state_dir: \(dir.path)/state, interval: 1s }
            meters: []
            pulses: [ { id: heat-pump, input: s0-1, impulses_per_kwh: 1000 } ]
            rails:
              sysfs_root: \(repositoryRoot)/Tests/PowerRailsTests/Fixtures/ina226
              nvml_library: none
              poll: 200ms
              sources: [ { id: rail, rail: "\(try Self.firstRail(root: "\(repositoryRoot)/Tests/PowerRailsTests/Fixtures/ina226"))" } ]
            mqtt: { host: 127.0.0.1, port: \(broker.port) }
            signing: { key: \(key) }
            metrics: { enabled: false }
            """)
        let gateway = try BackgroundProcess(try metergateBinary(), ["run", "--config", config, "--boards", dir.file("boards"), "--profiles", "\(repositoryRoot)/profiles"],
                                            logPath: dir.file("gw.log"))
        #expect(waitUntil(timeout: 30) { gateway.log.contains("status LED unavailable; running without it") }, "\(gateway.log)")
        #expect(gateway.log.contains("gpiochip-not-here"))
        // The S0 input's chip is missing too: reported, and the rest of the gateway runs on.
        #expect(waitUntil(timeout: 10) { gateway.log.contains("S0 input unavailable") }, "\(gateway.log)")
        #expect(waitUntil(timeout: 30) { gateway.log.contains("rail seq 2") || gateway.log.contains("rail seqs ") }, "\(gateway.log)")
        #expect(gateway.stop(signal: SIGTERM, timeout: 30) == 0, "\(gateway.log)")
    }

    /// The first rail `scan --rails` lists under a recorded tree.
    static func firstRail(root: String) throws -> String {
        let r = try runProcess(try metergateBinary(), ["scan", "--rails", "--sysfs-root", root, "--nvml", "/nonexistent"])
        let row = r.stdout.split(separator: "\n").dropFirst().first { $0.hasPrefix("hwmon") || $0.hasPrefix("rapl") }
        return try #require(row?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init))
    }
}
