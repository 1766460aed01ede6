import Foundation
import TestSupport
import Testing

/// The command-line contract: subcommands, help, exit codes 0/1/2, real files.
@Suite(.timeLimit(.minutes(5))) struct CLITests {
    @Test(arguments: ["run", "simulate", "scan", "check", "keygen", "tail", "verify", "replay", "outbox", "ledger", "trust"])
    func everySubcommandHasHelp(_ command: String) throws {
        let r = try runProcess(try metergateBinary(), [command, "--help"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE: metergate \(command)"))
    }

    @Test func runCanKeepItsStartUpPages() throws {
        let r = try runProcess(try metergateBinary(), ["run", "--help"])
        #expect(r.stdout.contains("--page-out-after-start/--no-page-out-after-start"), "\(r.stdout)")
        // The flag parses: what stops this run is the missing config, not the option.
        let missing = try runProcess(try metergateBinary(), ["run", "--config", "/nonexistent/gw.yaml", "--no-page-out-after-start"])
        #expect(missing.status == 2, "\(missing.stderr)")
        #expect(missing.stderr.contains("/nonexistent/gw.yaml") && !missing.stderr.contains("Unknown option"), "\(missing.stderr)")
    }

    @Test func checkPrintsTheResolvedDemoConfig() throws {
        // The demo's key is made by scripts/demo.sh; the config alone is checked here.
        let r = try runProcess(try metergateBinary(), ["check", "--skip-key", "--config", "examples/demo/metergate.yaml"], currentDirectory: repositoryRoot)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("id: demo-gw"))
        #expect(r.stdout.contains("profile: eastron-sdm630"))
        #expect(r.stdout.contains("interval: 15s"))
    }

    @Test func checkAdvisesARatedPowerWhereAMeterHasNone() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.write("gw.yaml", """
            gateway: { id: gw, board: sim, state_dir: \(dir.path) }
            buses: [{ id: b, tcp: { host: 127.0.0.1, port: 1502 } }]
            meters:
              - { id: bounded, bus: b, unit: 1, profile: eastron-sdm630, rated_power: 50000 }
              - { id: open, bus: b, unit: 2, profile: eastron-sdm630 }
            signing: { key: \(dir.file("k.pem")) }
            """)
        let r = try runProcess(try metergateBinary(), ["check", "--skip-key", "--config", path], currentDirectory: repositoryRoot)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("# advice: meter open has no rated_power"), "\(r.stdout)")
        #expect(!r.stdout.contains("meter bounded has no rated_power"))
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

    @Test func checkOpensTheSigningKeyAsRunDoes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        #expect(try runProcess(try metergateBinary(), ["keygen", "--out", dir.file("k.key")]).status == 0)
        func config(key: String, algorithm: String = "EdDSA") -> String {
            dir.write("gw-\((key as NSString).lastPathComponent)-\(algorithm).yaml", """
                gateway: { id: gw, board: sim, state_dir: \(dir.path)/state }
                buses:
                  - { id: b, tcp: { host: 127.0.0.1, port: \(freeLoopbackPort()) }, timeout: 500ms }
                meters:
                  - { id: m1, bus: b, unit: 1, profile: eastron-sdm630 }
                metrics: { enabled: false }
                mqtt: { host: 127.0.0.1 }
                signing: { key: \(key), algorithm: \(algorithm) }
                """)
        }
        let good = try runProcess(try metergateBinary(), ["check", "--config", config(key: dir.file("k.key"))], currentDirectory: repositoryRoot)
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("signing key: EdDSA, kid "))
        chmod(dir.file("k.key"), 0o644)
        try FileManager.default.createDirectory(atPath: dir.file("dir.key"), withIntermediateDirectories: true)
        for (key, algorithm, problem) in [(dir.file("k.key"), "EdDSA", "has mode 644: group or others can read it"),
                                          (dir.file("none.key"), "EdDSA", "No such file or directory"),
                                          (dir.file("dir.key"), "EdDSA", "is a directory, not a key file")] {
            let path = config(key: key, algorithm: algorithm)
            for command in ["check", "run"] {
                let r = try runProcess(try metergateBinary(), [command, "--config", path], currentDirectory: repositoryRoot)
                #expect(r.status == 2, "\(command) \(key): \(r.stderr)")
                #expect(r.stderr.contains("\(path): signing.key: ") && r.stderr.contains(key) && r.stderr.contains(problem), "\(r.stderr)")
            }
        }
        chmod(dir.file("k.key"), 0o600)
        let wrong = config(key: dir.file("k.key"), algorithm: "ES256")
        let r = try runProcess(try metergateBinary(), ["check", "--config", wrong], currentDirectory: repositoryRoot)
        #expect(r.status == 2 && r.stderr.contains("holds an EdDSA key, but signing.algorithm is ES256"), "\(r.stderr)")
        #expect(try runProcess(try metergateBinary(), ["check", "--skip-key", "--config", wrong], currentDirectory: repositoryRoot).status == 0)
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

/// The whole gateway as separate processes on real parts: `metergate simulate` (libmodbus server) →
/// `metergate run` (poll, account, sign, SQLite outbox, MQTT) → a real mosquitto → mosquitto_sub as the
/// settlement side → `metergate verify` over everything received.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RunCommandTests {
    @Test func endToEndSignedReadingsArriveVerifiedAndTheGatewayStopsCleanly() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let port = freeLoopbackPort()
        let simulator = try BackgroundProcess(try metergateBinary(), ["simulate", "--tcp", "127.0.0.1:\(port)", "--meter", "1=eastron-sdm630:5000", "--meter", "2=eastron-sdm630:800"],
                                              logPath: dir.file("sim.log"), currentDirectory: repositoryRoot)
        defer { simulator.stop() }
        #expect(waitUntil(timeout: 20) { isListening(port: port) }, "simulator did not listen: \(simulator.log)")
        let key = dir.file("signing.key")
        #expect(try runProcess(try metergateBinary(), ["keygen", "--out", key]).status == 0)
        // A key from before a rotation: its public half stays on the retained keys topic.
        let oldKey = dir.file("old.key")
        let old = try runProcess(try metergateBinary(), ["keygen", "--out", oldKey, "--algorithm", "ES256"])
        let oldKid = try #require(old.stdout.split(separator: "\n").first { $0.hasPrefix("kid: ") }).dropFirst(5)
        let received = dir.file("received.txt")
        let subscriber = try BackgroundProcess(which("mosquitto_sub") ?? "/usr/bin/mosquitto_sub",
                                               ["-h", "127.0.0.1", "-p", "\(broker.port)", "-q", "1", "-t", "metergate/v1/test-gw/+/reading"],
                                               logPath: received)
        defer { subscriber.stop() }
        // Settlement trusts the gateway's key for test-gw because it was handed over (the trust store), not the broker.
        let trust = dir.file("trust.json")
        #expect(try runProcess(try metergateBinary(), ["trust", "add", "--trust", trust, "--gateway", "test-gw", "--key", key]).status == 0)
        let tail = try BackgroundProcess(try metergateBinary(), ["tail", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--gateway", "test-gw",
                                                                 "--trust", trust, "--count", "4", "--timeout", "90"], logPath: dir.file("tail.txt"))
        defer { tail.stop() }
        let metricsPort = freeLoopbackPort()
        let config = dir.write("gw.yaml", """
            gateway: { id: test-gw, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            metrics: { listen: "127.0.0.1:\(metricsPort)" }
            buses:
              - { id: sim, tcp: { host: 127.0.0.1, port: \(port) } }
            meters:
              - { id: a, bus: sim, unit: 1, profile: eastron-sdm630, poll: 200ms }
              - { id: b, bus: sim, unit: 2, profile: eastron-sdm630, poll: 200ms }
            rails:
              sysfs_root: \(repositoryRoot)/Tests/PowerRailsTests/Fixtures/amd-gpu
              nvml_library: none
              poll: 200ms
              sources:
                - { id: gpu, rail: "hwmon:amdgpu@0000:03:00.0:PPT" }
                - { id: cpu, rail: "hwmon:amd_energy@amd_energy.0:Esocket0" }
            mqtt: { host: 127.0.0.1, port: \(broker.port), live: true }
            signing: { key: \(key), previous_keys: [\(oldKey)] }
            """)
        let gateway = try BackgroundProcess(try metergateBinary(), ["run", "--config", config, "--boards", "\(repositoryRoot)/boards", "--profiles", "\(repositoryRoot)/profiles"],
                                            logPath: dir.file("gw.log"))
        func lines() -> [String] {
            ((try? String(contentsOfFile: received, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        let arrived = waitUntil(timeout: 60) { lines().count >= 12 }
        #expect(arrived, "records received: \(lines().count)\n\(gateway.log)")
        #expect(gateway.log.contains("polled a:") && gateway.log.contains("polled b:"))
        // Start-up memory goes back after the config is read, before the services start and after the first poll.
        #expect(gateway.log.contains("start-up memory released after=configuration"), "\(gateway.log)")
        #expect(gateway.log.contains("start-up memory released after=set-up"), "\(gateway.log)")
        #expect(waitUntil(timeout: 10) { gateway.log.contains("start-up memory released after=\"first poll\"") }, "\(gateway.log)")
        // tail verified each reading with the trusted key and exits 0 after four.
        #expect(waitUntil(timeout: 60) { !tail.isRunning }, "tail: \(tail.log)")
        #expect(tail.stop() == 0, "tail: \(tail.log)")
        #expect(tail.log.contains("test-gw/a") && tail.log.contains("✓"), "tail: \(tail.log)")
        #expect(!tail.log.contains("✗"), "tail: \(tail.log)")
        if let curl = which("curl") {
            let health = try runProcess(curl, ["-s", "-w", " %{http_code}", "http://127.0.0.1:\(metricsPort)/health"])
            #expect(health.stdout.hasSuffix(" 200"), "health: \(health.stdout)")
            let metrics = try runProcess(curl, ["-s", "http://127.0.0.1:\(metricsPort)/metrics"])
            for name in ["metergate_outbox_records{state=\"delivered\"}", "metergate_polls_total{meter=\"a\",result=\"ok\"}",
                         "metergate_intervals_total", "metergate_mqtt_acknowledged_total", "metergate_samples_total", "metergate_mqtt_connections_total 1"] {
                #expect(metrics.stdout.contains(name), "\(name) missing from /metrics")
            }
            for total in ["metergate_mqtt_acknowledged_total", "metergate_records_signed_total", "metergate_mqtt_connections_total"] {
                #expect(metrics.stdout.contains("# TYPE \(total) counter"), "\(total) is not typed counter")
            }
        }
        // The retained public keys verify what arrived.
        let keys = try runProcess(which("mosquitto_sub") ?? "/usr/bin/mosquitto_sub",
                                  ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "metergate/v1/test-gw/keys", "-C", "1", "-W", "10"])
        #expect(keys.stdout.contains("\"kid\""), "keys topic: \(keys.stdout)")
        #expect(keys.stdout.contains(String(oldKid)), "the previous key is still published: \(keys.stdout)")
        // Live values: QoS 0, unsigned, every quantity of the meter in base units.
        let live = try runProcess(which("mosquitto_sub") ?? "/usr/bin/mosquitto_sub",
                                  ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "metergate/v1/test-gw/a/live", "-C", "1", "-W", "10"])
        #expect(live.stdout.contains("\"power\":") && live.stdout.contains("\"energy_import\":") && live.stdout.contains("\"t_ms\":"), "live: \(live.stdout)")
        let keysFile = dir.write("keys.json", keys.stdout)

        // SIGHUP: the log level applies at once; the interval needs a restart and says so; a broken file is refused.
        let original = try String(contentsOfFile: config, encoding: .utf8)
        _ = dir.write("gw.yaml", original.replacingOccurrences(of: "interval: 1s", with: "interval: 5m, log_level: debug"))
        kill(gateway.pid, SIGHUP)
        #expect(waitUntil(timeout: 10) { gateway.log.contains("log level is now debug") }, "\(gateway.log)")
        #expect(waitUntil(timeout: 10) { gateway.log.contains("gateway.interval changed; these apply after a restart") }, "\(gateway.log)")
        // And back: the start-up level is a level like any other.
        _ = dir.write("gw.yaml", original)
        kill(gateway.pid, SIGHUP)
        #expect(waitUntil(timeout: 10) { gateway.log.contains("log level is now info") }, "\(gateway.log)")
        _ = dir.write("gw.yaml", original + "\nbogus: 1\n")
        kill(gateway.pid, SIGHUP)
        #expect(waitUntil(timeout: 10) { gateway.log.contains("no longer validates; keeping the running one") }, "\(gateway.log)")
        _ = dir.write("gw.yaml", original)

        let status = gateway.stop(signal: SIGTERM, timeout: 30)
        #expect(status == 0, "exit status \(status): \(gateway.log)")
        #expect(gateway.log.contains("stopped cleanly"))
        #expect(simulator.stop(signal: SIGINT) == 0)
        // The subscriber has written its last message whole (mosquitto_sub ends each with a newline).
        #expect(waitUntil(timeout: 5) { ((try? String(contentsOfFile: received, encoding: .utf8)) ?? "\n").hasSuffix("\n") })

        // Everything received verifies: signatures, chains from seq 1, no gaps, both meters.
        let verify = try runProcess(try metergateBinary(), ["verify", "--key", keysFile, "--from-start", "--tolerate-redelivery", "--json", received])
        #expect(verify.status == 0, "verify: \(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("\"meter\":\"a\"") && verify.stdout.contains("\"meter\":\"b\""), "\(verify.stdout)")
        // The power rail (35 W on the recorded amdgpu tree) and the energy rail are streams like the meters.
        #expect(verify.stdout.contains("\"meter\":\"gpu\"") && verify.stdout.contains("\"meter\":\"cpu\""), "\(verify.stdout)")
        // The right kWh: each record's interval energy is the step of its cumulative total, and matches the
        // interval's average power (meter a draws 5 kW ± 25 % on a one-minute sine: 1 s intervals). A single
        // 1 s interval splits the energy between two polls by their timestamps, so a poll that a loaded machine
        // delays moves a share of a second's energy into its neighbour: per interval only a loose bound; the
        // sum over all measured intervals must land in the sine's band.
        struct Row { var delta: Int64; var total: Int64; var avg: Int64; var quality: String }
        var rows: [String: [Int: Row]] = [:]
        for line in Set(lines()) {
            let parts = line.split(separator: ".")
            guard parts.count == 3, let payload = Self.base64URL(String(parts[1])),
                  let record = try? JSONSerialization.jsonObject(with: payload) as? [String: Any],
                  let meter = record["meter"] as? String, let seq = record["seq"] as? Int,
                  let delta = (record["import_mwh"] as? NSNumber)?.int64Value, let total = (record["import_total_mwh"] as? NSNumber)?.int64Value,
                  let avg = (record["avg_mw"] as? NSNumber)?.int64Value, let quality = record["quality"] as? String else { continue }
            rows[meter, default: [:]][seq] = Row(delta: delta, total: total, avg: avg, quality: quality)
        }
        var checked = 0, measuredEnergy: Int64 = 0
        for (meter, bySeq) in rows {
            for (seq, row) in bySeq {
                #expect(row.delta >= 0 && row.total >= row.delta, "\(meter) seq \(seq): delta \(row.delta), total \(row.total)")
                if let previous = bySeq[seq - 1] {
                    #expect(row.total - previous.total == row.delta, "\(meter) seq \(seq): total \(row.total) − previous \(previous.total) ≠ delta \(row.delta)")
                }
                if meter == "a" && row.quality == "measured" {
                    let expected = Double(row.avg) / 3600   // mW over 1 s, in mWh
                    #expect(abs(Double(row.delta) - expected) <= expected * 0.1 + 5, "\(meter) seq \(seq): \(row.delta) mWh for \(row.avg) mW over 1 s")
                    #expect((2_000_000...8_000_000).contains(row.avg), "meter a draws 5 kW ± 25 %: \(row.avg) mW in one second")
                    checked += 1
                    measuredEnergy += row.delta
                }
            }
        }
        #expect(checked >= 2, "measured intervals of meter a checked: \(checked)")
        // mWh over `checked` seconds → mean mW.
        let meanPower = Double(measuredEnergy) * 3600 / Double(max(checked, 1))
        #expect((3_700_000...6_300_000).contains(meanPower), "meter a averages 5 kW ± 25 % over \(checked) s: \(meanPower) mW")

        // The outbox holds every record, all delivered, and export gives the same lines.
        let stats = try runProcess(try metergateBinary(), ["outbox", "stats", "--db", "\(dir.path)/state/outbox.sqlite"])
        #expect(stats.status == 0, "\(stats.stderr)")
    }

    /// base64url (RFC 4648 §5) without padding, as in a JWS.
    static func base64URL(_ text: String) -> Data? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }

    /// A key and a gateway config without meters in `dir` (state in `dir/state`, a broker port nobody
    /// listens on), with `extra` YAML; returns the config's path.
    func meterlessConfig(_ dir: TemporaryDirectory, extra: String = "") throws -> String {
        let key = dir.file("k.key")
        _ = try runProcess(try metergateBinary(), ["keygen", "--out", key])
        return dir.write("gw.yaml", """
            gateway: { id: gw, board: sim, state_dir: \(dir.path)/state }
            meters: []
            mqtt: { host: 127.0.0.1, port: \(freeLoopbackPort()) }
            signing: { key: \(key) }
            metrics: { enabled: false }
            \(extra)
            """)
    }

    @Test func runNamesARailThatIsNotOnThisMachine() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try meterlessConfig(dir, extra: """
            rails:
              sysfs_root: \(repositoryRoot)/Tests/PowerRailsTests/Fixtures/rapl
              nvml_library: none
              sources: [ { id: gpu0, rail: "nvml:GPU-00000000-0000-0000-0000-000000000000" } ]
            """)
        let r = try runProcess(try metergateBinary(), ["run", "--config", config], currentDirectory: repositoryRoot)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains("no rail 'nvml:GPU-00000000-0000-0000-0000-000000000000' on this machine"), "\(r.stderr)")
        #expect(r.stderr.contains("rapl:"), "the message lists the rails that exist: \(r.stderr)")
    }

    /// A damaged high-water mark beside an existing outbox: the gateway cannot tell whether the store lost
    /// published records, so it refuses to start, naming the files and what to do.
    @Test func runRefusesADamagedOutboxMarkNamingTheFiles() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try meterlessConfig(dir)
        let first = try BackgroundProcess(try metergateBinary(), ["run", "--config", config], logPath: dir.file("first.log"),
                                          currentDirectory: repositoryRoot)
        // Stopped once its services run (the publisher trying the absent broker): SIGTERM is handled from then on.
        #expect(waitUntil(timeout: 60) { first.log.contains("MQTT connection attempt failed") || !first.isRunning }, "\(first.log)")
        #expect(first.stop() == 0, "\(first.log)")
        let mark = "\(dir.path)/state/outbox.sqlite.mark-a"
        _ = dir.write("state/outbox.sqlite.mark-a", "not a mark\n")

        let r = try runProcess(try metergateBinary(), ["run", "--config", config], currentDirectory: repositoryRoot)
        #expect(r.status != 0, "\(r.stderr)")
        #expect(r.stderr.contains(mark) && r.stderr.contains("is damaged") && r.stderr.contains("remove"), "\(r.stderr)")
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

@Suite(.timeLimit(.minutes(5))) struct ScanRailsTests {
    @Test func listsTheRailsOfARecordedJetsonTree() throws {
        let root = "\(repositoryRoot)/Tests/PowerRailsTests/Fixtures/jetson-agx-orin"
        let r = try runProcess(try metergateBinary(), ["scan", "--rails", "--sysfs-root", root, "--nvml", "/nonexistent/libnvidia-ml.so.1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("VDD_GPU_SOC"), "\(r.stdout)")
        #expect(r.stdout.contains("VDD_CPU_CV"))
        let bad = try runProcess(try metergateBinary(), ["scan", "--rails", "--tcp", "127.0.0.1:1"])
        #expect(bad.status == 2)
        // A machine without rails is not a success for a script that asked for them.
        let empty = TemporaryDirectory()
        defer { empty.cleanup() }
        let none = try runProcess(try metergateBinary(), ["scan", "--rails", "--sysfs-root", empty.path, "--nvml", "/nonexistent"])
        #expect(none.status == 1 && none.stderr.contains("no power or energy rails found under \(empty.path)"), "\(none.stdout)\(none.stderr)")
    }

    @Test func versionNamesTheReleaseAndTheCommit() throws {
        let r = try runProcess(try metergateBinary(), ["--version"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("metergate 0."), "\(r.stdout)")
        // The commit scripts/setup.sh recorded for this build (from `git rev-parse`), or "unknown" without it.
        let header = (try? String(contentsOfFile: "\(repositoryRoot)/Sources/CBuildInfo/commit.h", encoding: .utf8)) ?? ""
        let recorded = header.split(separator: "\"").dropFirst().first.map(String.init) ?? "unknown"
        #expect(r.stdout.contains("(commit \(recorded))"), "\(r.stdout) vs \(header)")
    }
}
