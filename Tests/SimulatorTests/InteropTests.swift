import Foundation
import MeterCore
import Modbus
import Simulator
import TestSupport
import Testing

/// The project's Python with pymodbus (scripts/setup.sh installs it from scripts/requirements-test.txt).
func venvPython() throws -> String {
    let python = "\(repositoryRoot)/.venv/bin/python"
    guard FileManager.default.isExecutableFile(atPath: python) else {
        throw TestEnvironmentError("\(python) is missing: run bash scripts/setup.sh")
    }
    return python
}

func jsonString(_ object: Any) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

/// The JSON field spec the Python peer decodes with pymodbus alone.
func peerField(_ f: RegisterField) -> [String: Any] {
    ["quantity": f.quantity.rawValue, "address": f.address, "type": f.type.rawValue, "word_order": f.wordOrder.rawValue,
     "scale": f.scale, "unit_factor": f.unit.toBase ?? 1.0, "sf_address": f.scaleFactorAddress as Any? ?? NSNull()]
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct InteropTests {
    /// pymodbus reads our simulator (TCP and RTU): raw registers and decoded values must equal ours exactly.
    @Test(arguments: ["tcp", "rtu"]) func pymodbusClientReadsOurSimulator(transport: String) async throws {
        let python = try venvPython()
        let time = ManualTime()
        var meters: [Int: SimulatedMeter] = [:]
        for (i, p) in shippedProfiles.enumerated() {
            meters[i + 1] = SimulatedMeter(profile: p, curve: .constant(watts: 2345.6 - Double(i * 100)), importWattHours: 4_321_000, clock: time)
        }
        time.nanos += 900_000_000_000
        let bus = SimulatedBus(meters: meters)
        var pty: SocatPTYPair?
        var tcp: ModbusTCPServer?
        var rtu: ModbusRTUServer?
        let client: ModbusConnection
        var peerArguments: [String]
        if transport == "tcp" {
            tcp = try ModbusTCPServer(port: 0, handler: bus)
            client = try ModbusConnection(.tcp(host: "127.0.0.1", port: tcp!.port))
            peerArguments = ["tcp", "127.0.0.1", "\(tcp!.port)"]
        } else {
            pty = try SocatPTYPair()
            rtu = try ModbusRTUServer(settings: SerialSettings(device: pty!.a, baud: 19_200), handler: bus)
            client = try ModbusConnection(.rtu(SerialSettings(device: pty!.b, baud: 19_200)), responseTimeout: .seconds(1))
            peerArguments = ["rtu", pty!.b, "19200"]
        }
        defer { tcp?.stop(); rtu?.stop(); _ = pty }

        // Our side: discover SunSpec blocks, plan, read and decode every profile.
        var reads: [[String: Any]] = []
        var ours: [(unit: Int, profile: MeterProfile, readout: MeterReader.Readout)] = []
        for (i, p) in shippedProfiles.enumerated() {
            var located = p
            if let model = p.sunspecModel {
                let device = try #require(try await SunSpecDiscovery.discover(unit: i + 1, reader: client))
                located = p.located(at: try #require(device.models.first { $0.id == model }).address)
            }
            let reader = MeterReader(profile: located)
            ours.append((i + 1, located, try await reader.read(unit: i + 1, from: client)))
            for r in reader.plan.requests {
                reads.append(["unit": i + 1, "space": r.space.rawValue, "address": r.address, "count": r.count, "fields": r.fields.map(peerField)])
            }
        }
        // The ports must be free for the peer: our client lets go of the line first.
        await client.close()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let spec = dir.write("reads.json", try jsonString(["reads": reads]))
        let result = try runProcess(python, ["\(repositoryRoot)/Tests/peers/pymodbus_client.py"] + peerArguments + [spec])
        try #require(result.status == 0, "pymodbus client failed: \(result.stderr)")
        let answers = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        #expect(answers.count == reads.count)
        var compared = 0
        for answer in answers {
            let unit = answer["unit"] as! Int, address = answer["address"] as! Int
            let registers = (answer["registers"] as! [NSNumber]).map { $0.uint16Value }
            let mine = try #require(ours.first { $0.unit == unit })
            let block = try #require(mine.readout.blocks.first { $0.address == address })
            #expect(block.words == registers, "unit \(unit) @\(address): raw registers differ")
            for (quantity, hex) in answer["values"] as! [String: String] {
                let value = try #require(Double(hex), "pymodbus value \(hex)")
                #expect(mine.readout.values[Quantity(quantity)] == value, "\(mine.profile.id) \(quantity): ours \(mine.readout.values[Quantity(quantity)] ?? .nan), pymodbus \(value)")
                compared += 1
            }
        }
        print("pymodbus over \(transport): \(answers.count) reads, \(compared) values identical")
        #expect(compared == shippedProfiles.reduce(0) { $0 + $1.fields.count })
    }

    /// Our client against a pymodbus server serving each non-SunSpec profile's map, encoded by pymodbus.
    @Test func ourClientReadsAPymodbusServer() async throws {
        let python = try venvPython()
        let profiles = shippedProfiles.filter { $0.sunspecModel == nil }
        var units: [String: Any] = [:]
        var expected: [Int: [Quantity: Double]] = [:]
        for (i, p) in profiles.enumerated() {
            var values: [[String: Any]] = []
            for (k, f) in p.fields.enumerated() {
                // A distinct raw value per field, in range for its type (negative where the type is signed).
                let raw: Double
                switch f.type {
                case .float32, .float64: raw = 1000.25 + Double(k * 37 + i)
                case .i16, .i32, .i64: raw = Double(k % 2 == 0 ? 1234 + k : -(1234 + k))
                default: raw = Double(40_000 + k * 11 + i)
                }
                values.append(["space": f.space.rawValue, "address": f.address, "type": f.type.rawValue, "word_order": f.wordOrder.rawValue, "value": raw])
                let stored = f.type == .float32 ? Double(Float(raw)) : raw
                expected[i + 1, default: [:]][f.quantity] = stored * f.scale * (f.unit.toBase ?? 1)
            }
            units["\(i + 1)"] = ["values": values]
        }
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let spec = dir.write("server.json", try jsonString(["units": units]))
        let server = try BackgroundProcess(python, ["\(repositoryRoot)/Tests/peers/pymodbus_server.py", spec], logPath: dir.file("server.log"))
        // A short grace period: the peer exits at once on SIGTERM.
        defer { server.stop(timeout: 1) }
        try #require(waitUntil(timeout: 20) { server.log.contains("listening ") }, "pymodbus server did not start: \(server.log)")
        let port = try #require(Int(server.log.components(separatedBy: "listening ")[1].prefix { $0.isNumber }))
        try #require(waitUntil(timeout: 10) { isListening(port: port) })
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: port), responseTimeout: .seconds(2))
        var compared = 0
        for (i, p) in profiles.enumerated() {
            let readout = try await MeterReader(profile: p).read(unit: i + 1, from: client)
            for f in p.fields {
                let want = expected[i + 1]![f.quantity]!
                let got = readout.values[f.quantity]
                // Sentinels (ABB 0xFFFF…) are not among the values served, so every field must decode.
                #expect(got == want, "\(p.id) \(f.quantity): ours \(got ?? .nan), served \(want)")
                compared += 1
            }
        }
        print("pymodbus server: \(profiles.count) profiles, \(compared) values identical")
    }

    /// mbpoll (Debian), a C client nobody here wrote, reads our simulator over TCP and RTU.
    @Test func mbpollReadsOurSimulator() async throws {
        guard let mbpoll = which("mbpoll") else { throw TestEnvironmentError("mbpoll is not installed (apt-get install mbpoll)") }
        let time = ManualTime()
        let meter = SimulatedMeter(profile: sdm630, curve: .constant(watts: 1234.5), importWattHours: 777_000, clock: time)
        let tcp = try ModbusTCPServer(port: 0, handler: SimulatedBus(meters: [4: meter]))
        defer { tcp.stop() }
        // mbpoll: -0 for 0-based addresses, -B for big-endian word order, -t 3:float for input registers as floats.
        let args = ["-m", "tcp", "-p", "\(tcp.port)", "-a", "4", "-0", "-B", "-t", "3:float", "-r", "\(0x34)", "-c", "1", "-1", "127.0.0.1"]
        let out = try runProcess(mbpoll, args)
        #expect(out.status == 0, "\(out.stdout)\(out.stderr)")
        #expect(out.stdout.contains("[52]: \t1234.5"), "\(out.stdout)")
        let pty = try SocatPTYPair()
        let rtu = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 9600, parity: .even), handler: SimulatedBus(meters: [4: meter]))
        defer { rtu.stop() }
        let rtuArgs = ["-m", "rtu", "-b", "9600", "-P", "even", "-a", "4", "-0", "-B", "-t", "3:float", "-r", "\(0x48)", "-c", "1", "-1", pty.b]
        let rtuOut = try runProcess(mbpoll, rtuArgs)
        #expect(rtuOut.status == 0, "\(rtuOut.stdout)\(rtuOut.stderr)")
        #expect(rtuOut.stdout.contains("[72]: \t777"), "\(rtuOut.stdout)")
    }
}
