import Foundation
import TestSupport
import Testing

/// The real gateway names the meters the real simulator serves, over Modbus TCP and over RTU on a socat pty
/// pair: the serial the simulator serves (its Eastron serial register, SunSpec's common model), and after the
/// simulator's `replace` fault the new meter's serial with a signed statement that `metergate verify` reports.
@Suite(.serialized, .timeLimit(.minutes(3))) struct MeterIdentityCLITests {
    @Test func recordsNameTheServedSerialAndAReplacementIsSigned() throws {
        let pty = try SocatPTYPair()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let broker = try MosquittoBroker()
        let bin = try metergateBinary()
        // Unit 1 is replaced 8 s after the simulator starts; its new counter (0.05 kWh) is below the old (120 kWh).
        let simulator = try BackgroundProcess(bin, [
            "simulate", "--tcp", "127.0.0.1:0", "--rtu", pty.a, "--baud", "38400",
            "--meter", "1=eastron-sdm630:3600", "--meter", "3=sunspec-203:1800", "--import-kwh", "1=120",
            "--fault", "1=replace:0.05/after=8",
        ], logPath: dir.file("sim.log"), currentDirectory: repositoryRoot)
        defer { simulator.stop(timeout: 2) }
        try #require(waitUntil(timeout: 20) { simulator.log.contains("listening rtu") }, "simulator did not start: \(simulator.log)")
        let port = try #require(Int(simulator.log.components(separatedBy: "listening tcp 127.0.0.1:")[1].prefix { $0.isNumber }))
        let key = dir.file("signing.key")
        #expect(try runProcess(bin, ["keygen", "--out", key]).status == 0)
        let config = dir.write("gw.yaml", """
            gateway: { id: ident-gw, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            buses:
              - { id: tcp, tcp: { host: 127.0.0.1, port: \(port) }, timeout: 300ms }
              - { id: rtu, rtu: { device: \(pty.b), baud: 38400 }, timeout: 300ms }
            meters:
              - { id: tcp-sdm, bus: tcp, unit: 1, profile: eastron-sdm630, poll: 250ms }
              - { id: tcp-sunspec, bus: tcp, unit: 3, profile: sunspec-203, poll: 250ms }
              - { id: rtu-sdm, bus: rtu, unit: 1, profile: eastron-sdm630, poll: 250ms, serial: "1" }
            mqtt: { host: 127.0.0.1, port: \(broker.port) }
            signing: { key: \(key) }
            metrics: { enabled: false }
            """)
        let gateway = try BackgroundProcess(bin, ["run", "--config", config, "--boards", "\(repositoryRoot)/boards", "--profiles", "\(repositoryRoot)/profiles"],
                                            logPath: dir.file("gw.log"))
        defer { gateway.stop() }
        /// The meter's records in the outbox; `strict`: the export must succeed (not so while the gateway starts).
        func records(_ meter: String, strict: Bool = true) throws -> (lines: String, payloads: [[String: Any]]) {
            let export = try runProcess(bin, ["outbox", "export", "--db", "\(dir.path)/state/outbox.sqlite", "--meter", meter])
            if strict { #expect(export.status == 0, "\(export.stderr)") }
            let payloads = export.stdout.split(separator: "\n").compactMap { line -> [String: Any]? in
                let part = String(line.split(separator: ".")[1])
                var b64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
                while b64.count % 4 != 0 { b64 += "=" }
                return Data(base64Encoded: b64).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            }
            return (export.stdout, payloads)
        }
        func source(_ p: [String: Any]) -> (id: String, identity: String?) {
            let s = p["source"] as? [String: Any] ?? [:]
            return (s["id"] as? String ?? "", s["identity"] as? String)
        }
        // Past the swap on both Eastron positions, with a few intervals of the new meter signed (read while it runs).
        let settled = waitUntil(timeout: 60) {
            ["tcp-sdm", "rtu-sdm"].allSatisfy { meter in
                ((try? records(meter, strict: false).payloads) ?? []).filter { source($0).id == "eastron:SDM630:500001" }.count >= 3
            }
        }
        #expect(settled, "\(gateway.log)")
        #expect(gateway.stop(signal: SIGTERM, timeout: 30) == 0, "\(gateway.log)")
        // SunSpec: the common model's manufacturer, model and serial.
        let sunspec = try records("tcp-sunspec").payloads
        #expect(!sunspec.isEmpty && sunspec.allSatisfy { source($0).id == "metergate:Simulated-Model-203:SIM00003" && source($0).identity == "read" },
                "\(sunspec.map { source($0) })")
        // The Eastron meter over TCP and over RTU: serial 1 (the simulator's SIM00001), then 500001 after the swap.
        for meter in ["tcp-sdm", "rtu-sdm"] {
            let (lines, payloads) = try records(meter)
            #expect(payloads.count >= 8, "\(meter): \(payloads.count) records")
            let statements = payloads.compactMap { $0["replaced"] as? [String: Any] }
            #expect(statements.count == 1, "\(meter): \(statements)")
            let statement = try #require(statements.first)
            #expect(statement["old"] as? String == "eastron:SDM630:1" && statement["new"] as? String == "eastron:SDM630:500001", "\(statement)")
            #expect((statement["old_import_mwh"] as? Int ?? 0) >= 120_000_000 && (statement["new_import_mwh"] as? Int ?? -1) >= 50_000
                    && (statement["new_import_mwh"] as? Int ?? .max) < 60_000, "\(statement)")
            let ids = payloads.map { source($0).id }
            #expect(ids.first == "eastron:SDM630:1" && ids.last == "eastron:SDM630:500001", "\(meter): \(ids)")
            // Pinned to serial 1, the RTU position alarms once the new meter answers, and is never measured then.
            let after = payloads.filter { source($0).id == "eastron:SDM630:500001" }
            if meter == "rtu-sdm" {
                #expect(after.allSatisfy { source($0).identity == "mismatch" && $0["quality"] as? String != "measured" }, "\(after.map { source($0) })")
            } else {
                #expect(after.allSatisfy { source($0).identity == "read" })
            }
            // Nothing paid across the swap: no interval above 1 s at 3.6 kW (1 Wh) with some slack.
            #expect(payloads.allSatisfy { ($0["import_mwh"] as? Int ?? 0) < 1_600 }, "\(payloads.map { $0["import_mwh"] ?? "?" })")
            // metergate verify: the chain is whole and the replacement is reported.
            let file = dir.write("\(meter).jws", lines)
            let verify = try runProcess(bin, ["verify", "--key", key, "--from-start", "--json", file])
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
            #expect(verify.stdout.contains("\"replacements\":[{") && verify.stdout.contains("\"new\":\"eastron:SDM630:500001\""), "\(verify.stdout)")
        }
        #expect(gateway.log.contains("another meter answers than the one commissioned"), "\(gateway.log)")
    }
}
