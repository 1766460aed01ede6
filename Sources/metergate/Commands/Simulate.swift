import ArgumentParser
import ConfigFile
import Foundation
import Gateway
import Logging
import Modbus
import ServiceLifecycle
import Simulator
import UnixSignals

/// `metergate simulate`: simulated meters served over real libmodbus, on Modbus TCP and/or RTU.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve simulated meters over Modbus TCP and/or RTU (libmodbus server) until SIGTERM or SIGINT.",
        discussion: """
            Examples:
              metergate simulate --tcp 127.0.0.1:1502 --meter 1=eastron-sdm630:3000
              metergate simulate --rtu /tmp/ttyA --baud 9600 --meter 1=eastron-sdm630 --meter 2=abb-b23 --fault 2=no-answer
              metergate simulate --config sim.yaml
            Loads (--load UNIT=…): constant:WATTS, sine:BASE:AMPLITUDE:PERIOD (e.g. sine:2000:500:60s), csv:FILE (seconds,watts).
            Faults (--fault UNIT=…): no-answer, slow:DURATION, exception:CODE, corrupt, reset, replace[:KWH] (new serial,
            counters from KWH), rollover[:MODULUS],
            each optionally followed by /every=N, /after=SECONDS, /until=SECONDS.
            On start it prints one line per listener: "listening tcp HOST:PORT" or "listening rtu DEVICE".
            """)

    @Option(help: "Listen on HOST:PORT for Modbus TCP (port 0: any free port). Default 127.0.0.1:1502 unless --rtu is given.")
    var tcp: String?

    @Option(help: "Serve Modbus RTU on this serial device or pseudo-terminal (e.g. one end of a socat pty pair).")
    var rtu: String?

    @Option(help: "RTU baud rate.")
    var baud: Int = 9600

    @Option(help: "RTU parity: N, E or O.")
    var parity: String = "N"

    @Flag(help: "On RTU, delay each answer by the time request and answer take on a real line at --baud (a pty is instant).")
    var emulateWireTime = false

    @Option(name: .customLong("meter"), help: "UNIT=PROFILE[:WATTS]: a meter of PROFILE at unit id UNIT (default load: sine around WATTS, 2000).")
    var meters: [String] = []

    @Option(name: .customLong("load"), help: "UNIT=LOAD: the load curve of unit UNIT (see below).")
    var loads: [String] = []

    @Option(name: .customLong("fault"), help: "UNIT=FAULT: inject a fault at unit UNIT (repeatable; see below).")
    var faults: [String] = []

    @Option(name: .customLong("import-kwh"), help: "UNIT=KWH: the import counter's starting value.")
    var importKWh: [String] = []

    @Option(name: .customLong("config"), help: "A simulation file (YAML) instead of --meter options.")
    var configFile: String?

    @Option(name: .customLong("profiles"), help: "A directory of meter profiles (default: ./profiles, then the installed set).")
    var profileDirectories: [String] = []

    @OptionGroup var log: LogOptions

    func run() async throws {
        log.bootstrap()
        let logger = Logger(label: "simulate")
        let library: ProfileLibrary
        do { library = try ProfileLibrary(directories: profileDirectories.isEmpty ? DataDirectories.profiles() : profileDirectories) }
        catch { throw Failure.usage(error.description) }
        let config = try makeConfig(library: library)

        var served: [Int: SimulatedMeter] = [:]
        for spec in config.meters { served[spec.unit] = spec.makeMeter() }
        let bus = SimulatedBus(meters: served)
        var tcpServer: ModbusTCPServer?
        var rtuServer: ModbusRTUServer?
        do {
            if let tcp = config.tcp {
                let server = try ModbusTCPServer(host: tcp.host, port: tcp.port, handler: bus)
                tcpServer = server
                say("listening tcp \(tcp.host):\(server.port)")
            }
            if let rtu = config.rtu {
                rtuServer = try ModbusRTUServer(settings: rtu, handler: bus, emulateWireTime: config.emulateWireTime)
                say("listening rtu \(rtu.device) \(rtu.baud) \(rtu.dataBits)\(rtu.parity.rawValue)\(rtu.stopBits)")
            }
        } catch {
            tcpServer?.stop()
            throw Failure.run("\(error)")
        }
        let (tcpToStop, rtuToStop) = (tcpServer, rtuServer)
        for spec in config.meters.sorted(by: { $0.unit < $1.unit }) {
            logger.info("unit \(spec.unit): \(spec.profile.id)", metadata: ["faults": "\(spec.faults.map(\.description).joined(separator: "; "))"])
        }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: ServerService(stop: { tcpToStop?.stop(); rtuToStop?.stop() }))],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        logger.info("simulator stopped")
    }

    private func makeConfig(library: ProfileLibrary) throws -> SimulationConfig {
        if let configFile {
            guard meters.isEmpty, loads.isEmpty, faults.isEmpty, importKWh.isEmpty else {
                throw Failure.usage("--config cannot be combined with --meter, --load, --fault or --import-kwh")
            }
            do { return try SimulationConfig.load(path: configFile, profiles: library) } catch { throw Failure.usage(error.description) }
        }
        guard !meters.isEmpty else { throw Failure.usage("--meter UNIT=PROFILE[:WATTS] is needed at least once (or --config FILE)") }
        var specs: [Int: SimulatedMeterSpec] = [:]
        for spec in meters {
            let parts = spec.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let unit = Int(parts[0]), (1...247).contains(unit) else {
                throw Failure.usage("--meter '\(spec)': expected UNIT=PROFILE[:WATTS] with UNIT 1…247")
            }
            guard specs[unit] == nil else { throw Failure.usage("--meter '\(spec)': unit \(unit) is given twice") }
            let rest = parts[1].split(separator: ":")
            guard let name = rest.first, let profile = library[String(name)] else {
                throw Failure.usage("--meter '\(spec)': no profile '\(rest.first ?? "")' (known: \(library.profiles.keys.sorted().joined(separator: ", ")))")
            }
            let watts = rest.count > 1 ? Double(rest[1]) : 2000
            guard let watts else { throw Failure.usage("--meter '\(spec)': WATTS must be a number") }
            specs[unit] = SimulatedMeterSpec(unit: unit, profile: profile, curve: .sine(baseWatts: watts, amplitudeWatts: watts / 4, period: .seconds(60)))
        }
        func target(_ option: String, _ text: String) throws -> (Int, String) {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let unit = Int(parts[0]), specs[unit] != nil else {
                throw Failure.usage("--\(option) '\(text)': expected UNIT=… for a unit given with --meter")
            }
            return (unit, parts[1])
        }
        for text in loads {
            let (unit, value) = try target("load", text)
            guard let curve = SimulationConfig.parseLoad(value) else {
                throw Failure.usage("--load '\(text)': expected constant:WATTS, sine:BASE:AMPLITUDE:PERIOD or csv:FILE (a readable seconds,watts file)")
            }
            specs[unit]!.curve = curve
        }
        for text in faults {
            let (unit, value) = try target("fault", text)
            guard let fault = Fault.parse(value) else {
                throw Failure.usage("--fault '\(text)': expected no-answer, slow:DURATION, exception:CODE, corrupt, reset or rollover[:MODULUS], optionally /every=N, /after=S, /until=S")
            }
            specs[unit]!.faults.append(fault)
        }
        for text in importKWh {
            let (unit, value) = try target("import-kwh", text)
            guard let kwh = Double(value), kwh >= 0 else { throw Failure.usage("--import-kwh '\(text)': expected a number ≥ 0") }
            specs[unit]!.importWattHours = kwh * 1000
        }
        var tcpEndpoint: (String, Int)?
        if let tcp {
            guard let hp = parseHostPort(tcp) else { throw Failure.usage("--tcp '\(tcp)': expected HOST:PORT") }
            tcpEndpoint = hp
        } else if rtu == nil {
            tcpEndpoint = ("127.0.0.1", 1502)
        }
        var serial: SerialSettings?
        if let rtu {
            guard let p = SerialSettings.Parity(rawValue: Character(parity.uppercased().prefix(1).description)), parity.count == 1 else {
                throw Failure.usage("--parity '\(parity)': expected N, E or O")
            }
            guard (300...4_000_000).contains(baud) else { throw Failure.usage("--baud \(baud): expected 300…4000000") }
            serial = SerialSettings(device: rtu, baud: baud, parity: p)
        }
        return SimulationConfig(tcp: tcpEndpoint, rtu: serial, emulateWireTime: emulateWireTime,
                                meters: specs.values.sorted { $0.unit < $1.unit })
    }
}

/// Keeps the servers up until graceful shutdown, then stops them.
struct ServerService: Service {
    let stop: @Sendable () -> Void
    func run() async throws {
        try? await gracefulShutdown()
        stop()
    }
}

/// Prints a line and flushes it at once: scripts and tests wait for the "listening" lines.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
