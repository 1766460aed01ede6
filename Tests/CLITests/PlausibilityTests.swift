import Foundation
import TestSupport
import Testing

/// A meter served by pymodbus (not our simulator) whose counter jumps by 1e9 kWh, configured without
/// `rated_power`: its profile's limits bound what is paid, so the jump is never `measured`, and its neighbour's
/// records go on arriving every interval.
@Suite(.serialized, .timeLimit(.minutes(3))) struct PlausibilityTests {
    @Test func aCounterJumpBeyondTheProfilesLimitsIsNeverMeasured() throws {
        let python = "\(repositoryRoot)/.venv/bin/python"
        try #require(FileManager.default.isExecutableFile(atPath: python), "run scripts/setup.sh: \(python) is missing")
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        func unit(importKWh: Double) -> [String: Any] {
            let energy: [String: Any] = ["space": "input", "address": 0x48, "type": "float32", "word_order": "big", "value": importKWh]
            return ["values": [
                ["space": "input", "address": 0x00, "type": "float32", "word_order": "big", "value": 230.0],
                ["space": "input", "address": 0x34, "type": "float32", "word_order": "big", "value": 1000.0],
                energy,
                ["space": "input", "address": 0x164, "type": "float32", "word_order": "big", "value": 0.0],
            ]]
        }
        // The meters' server; started again in its place, on the same port, with the jumper's counter 1e9 kWh on.
        let port = freeLoopbackPort()
        func serve(jumperKWh: Double, log: String) throws -> BackgroundProcess {
            let spec: [String: Any] = ["port": port, "units": ["1": unit(importKWh: jumperKWh), "2": unit(importKWh: 200)]]
            let file = dir.write("\(log).json", String(decoding: try JSONSerialization.data(withJSONObject: spec), as: UTF8.self))
            let server = try BackgroundProcess(python, ["\(repositoryRoot)/Tests/peers/pymodbus_server.py", file], logPath: dir.file(log))
            try #require(waitUntil(timeout: 20) { isListening(port: port) }, "pymodbus server did not start: \(server.log)")
            return server
        }
        var server = try serve(jumperKWh: 100, log: "server-1.log")
        defer { server.stop(timeout: 1) }

        let broker = try MosquittoBroker()
        let key = dir.file("signing.key")
        #expect(try runProcess(try metergateBinary(), ["keygen", "--out", key]).status == 0)
        let config = dir.write("gw.yaml", """
            gateway: { id: jump-gw, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            metrics: { enabled: false }
            buses:
              - { id: pdu, tcp: { host: 127.0.0.1, port: \(port) } }
            meters:
              - { id: jumper, bus: pdu, unit: 1, profile: eastron-sdm630, poll: 200ms }
              - { id: steady, bus: pdu, unit: 2, profile: eastron-sdm630, poll: 200ms }
            mqtt: { host: 127.0.0.1, port: \(broker.port) }
            signing: { key: \(key) }
            """)
        let dataDirs = ["--boards", "\(repositoryRoot)/boards", "--profiles", "\(repositoryRoot)/profiles"]
        let check = try runProcess(try metergateBinary(), ["check", "--config", config] + dataDirs)
        #expect(check.stdout.contains("meter jumper has no rated_power: increases are bounded by what a SDM630 can measure, 6900000 W"), "\(check.stdout)")

        let tail = try BackgroundProcess(try metergateBinary(), ["tail", "--broker", "mqtt://127.0.0.1:\(broker.port)", "--key", key, "--json"],
                                         logPath: dir.file("tail.log"))
        defer { tail.stop() }
        let gateway = try BackgroundProcess(try metergateBinary(), ["run", "--config", config] + dataDirs, logPath: dir.file("gw.log"))
        defer { gateway.stop() }
        struct Line: Decodable { var meter: String; var seq: Int; var start: Int64; var quality: String; var import_delta_mwh: Int64; var verified: Bool }
        func lines() -> [Line] {
            tail.log.split(separator: "\n").compactMap { try? JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
        }
        func count(_ meter: String) -> Int { lines().filter { $0.meter == meter }.count }
        #expect(waitUntil(timeout: 60) { count("jumper") >= 3 && count("steady") >= 3 }, "\(tail.log)\n\(gateway.log)")
        let steadyBefore = count("steady")
        server.stop(timeout: 1)
        server = try serve(jumperKWh: 1e9 + 100, log: "server-2.log")
        #expect(waitUntil(timeout: 60) { count("steady") >= steadyBefore + 6 && count("jumper") >= 6 }, "\(tail.log)\n\(gateway.log)")
        #expect(gateway.stop(signal: SIGTERM, timeout: 30) == 0, "\(gateway.log)")

        let all = lines()
        #expect(all.allSatisfy { $0.verified }, "\(tail.log)")
        // The jump (about 1e15 mWh) is never paid, and the interval that held it is not measured.
        let jumper = all.filter { $0.meter == "jumper" }
        #expect(jumper.allSatisfy { $0.import_delta_mwh < 1_000_000_000 }, "\(jumper.map(\.import_delta_mwh))")
        #expect(jumper.contains { $0.quality != "measured" }, "\(jumper.map(\.quality))")
        #expect(gateway.log.contains("implausible"), "\(gateway.log)")
        // The neighbour: one record per interval throughout (through the server's restart too), every seq from 1.
        let steady = all.filter { $0.meter == "steady" }.map(\.seq)
        #expect(Set(steady) == Set(1...(steady.max() ?? 0)), "\(steady)")
        let starts = Set(all.filter { $0.meter == "steady" }.map(\.start))
        if let first = starts.min(), let last = starts.max() {
            #expect(starts == Set(stride(from: first, through: last, by: 1000)), "an interval of the neighbour is missing: \(starts.sorted())")
        }
    }
}
