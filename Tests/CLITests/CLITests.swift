import Foundation
import TestSupport
import Testing

/// The command-line contract: subcommands, help, exit codes 0/1/2, real files.
@Suite struct CLITests {
    @Test(arguments: ["run", "simulate", "scan", "check", "keygen", "tail", "verify", "replay", "outbox"])
    func everySubcommandHasHelp(_ command: String) throws {
        let r = try runProcess(try metergateBinary(), [command, "--help"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE: metergate \(command)"))
    }

    @Test func checkPrintsTheResolvedDemoConfig() throws {
        let r = try runProcess(try metergateBinary(), ["check", "--config", "examples/demo/metergate.yaml"], currentDirectory: repositoryRoot)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("id: demo-gw"))
        #expect(r.stdout.contains("profile: eastron-sdm630"))
        #expect(r.stdout.contains("interval: 1m"))
    }

    @Test func checkExitsTwoWithEveryError() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.write("bad.yaml", """
            gateway: { id: gw, board: nope }
            meters:
              - { id: "a#b", bus: x, unit: 1, profile: eastron-sdm630 }
            """)
        let r = try runProcess(try metergateBinary(), ["check", "--config", path], currentDirectory: repositoryRoot)
        #expect(r.status == 2)
        #expect(r.stderr.contains("\(path):1:"))
        #expect(r.stderr.contains("gateway.board: unknown board 'nope'"))
        #expect(r.stderr.contains("meters[0].id: id 'a#b'"))
        let missing = try runProcess(try metergateBinary(), ["check", "--config", dir.file("none.yaml")])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("none.yaml: no such file"))
    }

    @Test func usageErrorsExitTwo() throws {
        #expect(try runProcess(try metergateBinary(), ["check"]).status == 2)
        #expect(try runProcess(try metergateBinary(), ["frobnicate"]).status == 2)
    }

    @Test func keygenWritesAPrivateKeyAndPrintsThePublicOne() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        for algorithm in ["EdDSA", "ES256"] {
            let path = dir.file("\(algorithm).key")
            let r = try runProcess(try metergateBinary(), ["keygen", "--out", path, "--algorithm", algorithm])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("\"alg\":\"\(algorithm)\""))
            #expect(r.stdout.contains("spki-der-hex: 30"))
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            // Showing the same key prints the same key id.
            let kid = r.stdout.split(separator: "\n").first { $0.hasPrefix("kid: ") }
            let show = try runProcess(try metergateBinary(), ["keygen", "--show", path])
            #expect(show.stdout.split(separator: "\n").first { $0.hasPrefix("kid: ") } == kid)
            // OpenSSL reads the key file and derives the same public key.
            if let openssl = which("openssl") {
                let pub = try runProcess(openssl, ["pkey", "-in", path, "-pubout"])
                #expect(pub.status == 0)
                #expect(r.stdout.contains(pub.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
            }
        }
        let again = try runProcess(try metergateBinary(), ["keygen", "--out", dir.file("EdDSA.key")])
        #expect(again.status == 1)
        #expect(again.stderr.contains("already exists"))
    }

    @Test func keygenRefusesAReadableKey() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.file("k.key")
        _ = try runProcess(try metergateBinary(), ["keygen", "--out", path])
        chmod(path, 0o640)
        let r = try runProcess(try metergateBinary(), ["keygen", "--show", path])
        #expect(r.status == 2)
        #expect(r.stderr.contains("chmod 600 \(path)"))
    }
}

/// `metergate simulate` and `metergate run` as separate processes over real Modbus TCP.
@Suite struct RunCommandTests {
    @Test func runPollsSimulatedMetersAndStopsCleanlyOnSIGTERM() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let port = freeLoopbackPort()
        let simulator = try BackgroundProcess(try metergateBinary(), ["simulate", "--tcp", "127.0.0.1:\(port)", "--meter", "1=eastron-sdm630:5000", "--meter", "2=eastron-sdm630:800"],
                                              logPath: dir.file("sim.log"), currentDirectory: repositoryRoot)
        defer { simulator.stop() }
        #expect(waitUntil(timeout: 20) { isListening(port: port) }, "simulator did not listen: \(simulator.log)")
        let metricsPort = freeLoopbackPort()
        let config = dir.write("gw.yaml", """
            gateway: { id: test-gw, board: sim, state_dir: \(dir.path)/state }
            metrics: { listen: "127.0.0.1:\(metricsPort)" }
            buses:
              - { id: sim, tcp: { host: 127.0.0.1, port: \(port) } }
            meters:
              - { id: a, bus: sim, unit: 1, profile: eastron-sdm630, poll: 200ms }
              - { id: b, bus: sim, unit: 2, profile: eastron-sdm630, poll: 200ms }
            """)
        let gateway = try BackgroundProcess(try metergateBinary(), ["run", "--config", config, "--boards", "\(repositoryRoot)/boards", "--profiles", "\(repositoryRoot)/profiles"],
                                            logPath: dir.file("gw.log"))
        let polledBoth = waitUntil(timeout: 30) { gateway.log.contains("polled a:") && gateway.log.contains("polled b:") }
        #expect(polledBoth, "no polls seen: \(gateway.log)")
        if let curl = which("curl") {
            let health = try runProcess(curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(metricsPort)/health"])
            #expect(health.stdout == "200", "health: \(health.stdout) \(gateway.log)")
        }
        // SIGHUP: the log level applies at once; the interval needs a restart and says so; a broken file is refused.
        let original = try String(contentsOfFile: config, encoding: .utf8)
        _ = dir.write("gw.yaml", original.replacingOccurrences(of: "state_dir:", with: "log_level: debug, interval: 5m, state_dir:"))
        kill(gateway.pid, SIGHUP)
        #expect(waitUntil(timeout: 10) { gateway.log.contains("log level is now debug") }, "\(gateway.log)")
        #expect(waitUntil(timeout: 10) { gateway.log.contains("gateway.interval changed; these apply after a restart") }, "\(gateway.log)")
        _ = dir.write("gw.yaml", original + "\nbogus: 1\n")
        kill(gateway.pid, SIGHUP)
        #expect(waitUntil(timeout: 10) { gateway.log.contains("no longer validates; keeping the running one") }, "\(gateway.log)")
        let status = gateway.stop(signal: SIGTERM, timeout: 15)
        #expect(status == 0, "exit status \(status): \(gateway.log)")
        #expect(gateway.log.contains("stopped cleanly"))
        #expect(gateway.log.contains("power 5"), "meter a draws about 5 kW: \(gateway.log)")
        #expect(simulator.stop(signal: SIGINT) == 0)
    }

    @Test func runRefusesABadConfigWithExitTwo() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = dir.write("gw.yaml", "gateway: { id: gw, board: sim }\nmeters: []\nbogus: true\n")
        let r = try runProcess(try metergateBinary(), ["run", "--config", config], currentDirectory: repositoryRoot)
        #expect(r.status == 2)
        #expect(r.stderr.contains("bogus: unknown key"))
    }
}

@Suite struct ScanRailsTests {
    @Test func listsTheRailsOfARecordedJetsonTree() throws {
        let root = "\(repositoryRoot)/Tests/PowerRailsTests/Fixtures/jetson-agx-orin"
        let r = try runProcess(try metergateBinary(), ["scan", "--rails", "--sysfs-root", root, "--nvml", "/nonexistent/libnvidia-ml.so.1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("VDD_GPU_SOC"), "\(r.stdout)")
        #expect(r.stdout.contains("VDD_CPU_CV"))
        let bad = try runProcess(try metergateBinary(), ["scan", "--rails", "--tcp", "127.0.0.1:1"])
        #expect(bad.status == 2)
    }
}
