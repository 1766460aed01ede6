import Delivery
import ConfigFile
import Foundation
import MeterCore
import Modbus
import MQTT
import Outbox
import Signing

/// The whole gateway configuration, validated: if one of these exists, every id is topic-safe, every meter
/// names a known bus and profile, and the board exists.
public struct GatewayConfig: Sendable {
    /// The file it was read from.
    public var file: String
    public var gateway: GatewayID
    public var board: Board
    /// Where the outbox, accounting state and keys live (systemd's StateDirectory in production).
    public var stateDirectory: String
    /// Settlement interval length.
    public var interval: Duration
    public var buses: [BusConfig]
    public var meters: [MeterConfig]
    public var mqtt: MQTTConfig
    public var signing: SigningConfig
    public var outbox: OutboxConfiguration
    /// Directories searched for meter profiles, in order (later wins).
    public var profileDirectories: [String]
    public var profiles: ProfileLibrary
    public var logLevel: String
    public var metrics: MetricsConfig
    public var rails: RailsConfig
    public var pulses: [PulseConfig]
}

/// An S0 pulse input of the board, counted as a meter stream.
public struct PulseConfig: Sendable, Hashable {
    public var id: MeterID
    /// The board's input (its `s0_inputs` entry).
    public var input: Board.PulseInput
    public var impulsesPerKilowattHour: UInt64
    /// Shortest pulse counted (S0: at least 30 ms by IEC 62053-31; default 20 ms to allow for edge jitter).
    public var minimumPulse: Duration
    public var ratedPowerWatts: Double?
    public var envelope: RecordEnvelope
}

/// GPU and board power rails to account as meter streams (ids from `metergate scan --rails`).
public struct RailsConfig: Sendable, Hashable {
    public struct Source: Sendable, Hashable {
        /// The stream id (one MQTT topic level), like a meter's.
        public var id: MeterID
        /// The rail id as `scan --rails` prints it: "hwmon:ina3221@1-0040:VDD_GPU_SOC", "rapl:…", "nvml:GPU-…".
        public var rail: String
        public var ratedPowerWatts: Double?
        public var envelope: RecordEnvelope
    }
    /// Where sysfs is ("/" on a gateway; a recorded tree in tests and the demo).
    public var sysfsRoot: String
    /// The NVML library to load; nil: no GPUs.
    public var nvmlLibrary: String?
    public var pollInterval: Duration
    public var sources: [Source]
}

/// The Prometheus `/metrics` and `/health` endpoint. Loopback by default: metrics are not for the world.
public struct MetricsConfig: Sendable, Hashable {
    public var enabled: Bool
    public var host: String
    public var port: Int
    /// `/health` turns 503 when unsent records exceed this many while the broker is disconnected.
    public var backlogAlarm: Int
}

/// One Modbus bus: an RTU serial line (several units) or a TCP endpoint.
public struct BusConfig: Sendable, Hashable {
    public var id: Identifier
    public var transport: ModbusTransport
    public var responseTimeout: Duration
    /// Pauses and back-off: the transport's defaults with the config's `unit_pause` and `max_backoff`.
    public var timing: BusTiming
    /// The GPIO line that drives the transceiver's DE/RE pins (the board port's `direction_gpio`), if any.
    public var directionLine: Board.GPIOLineRef? = nil
    /// With a direction line: the settle time before and after each frame in µs (`rts_delay`; nil: one byte time).
    public var rtsDelayMicroseconds: Int? = nil
}

public struct SigningConfig: Sendable, Hashable {
    public var keyFile: String
    public var algorithm: SigningAlgorithm
    /// Public keys of earlier signing keys (JWK, JWK Set or PEM files), still published on the retained
    /// `keys` topic so records signed before a rotation stay verifiable.
    public var previousKeys: [String]
    /// Rotation statements (`keygen --rotate-from`): each signed by an earlier key and naming the next, published
    /// with the keys so that settlement trusting the earlier key trusts the next.
    public var rotations: [String] = []
    /// Whether every new signature is verified with the public key before its record is stored
    /// (``RecordSigner/selfCheck``). On unless the config says `self_check: false`.
    public var selfCheck: Bool = true
}

extension GatewayConfig {
    /// Loads and validates a config file, collecting every error it can find before giving up.
    ///
    /// - Parameters:
    ///   - path: the config file.
    ///   - boardDirectories: where `board: NAME` is looked up as `NAME.yaml`.
    ///   - profileDirectories: built-in profile directories, searched before the config's own `profiles:` list.
    public static func load(path: String, boardDirectories: [String], profileDirectories: [String]) throws(ConfigErrors) -> GatewayConfig {
        let root: ConfigNode
        do { root = try ConfigNode.load(path: path) } catch { throw ConfigErrors([error]) }
        return try read(root, path: path, boardDirectories: boardDirectories, profileDirectories: profileDirectories)
    }

    /// Parses and validates config text as if it were the file at `path` (relative paths in it are resolved
    /// against that file's folder); the same checks and errors as ``load(path:boardDirectories:profileDirectories:)``.
    public static func parse(_ text: String, path: String, boardDirectories: [String], profileDirectories: [String]) throws(ConfigErrors) -> GatewayConfig {
        let root: ConfigNode
        do { root = try ConfigNode.parse(text, file: path) } catch { throw ConfigErrors([error]) }
        return try read(root, path: path, boardDirectories: boardDirectories, profileDirectories: profileDirectories)
    }

    private static func read(_ root: ConfigNode, path: String, boardDirectories: [String], profileDirectories: [String]) throws(ConfigErrors) -> GatewayConfig {
        let reader = ConfigReader(root: root, baseDirectory: (path as NSString).deletingLastPathComponent,
                                  boardDirectories: boardDirectories, profileDirectories: profileDirectories)
        return try reader.read()
    }
}

/// Reads the document section by section, collecting errors so one `check` run reports them all.
struct ConfigReader {
    let root: ConfigNode
    let baseDirectory: String
    let boardDirectories: [String]
    let profileDirectories: [String]
    /// Errors found so far; a class so that reading closures can record without exclusive access to the reader.
    private final class ErrorSink { var errors: [ConfigError] = [] }
    private let sink = ErrorSink()

    init(root: ConfigNode, baseDirectory: String, boardDirectories: [String], profileDirectories: [String]) {
        self.root = root
        self.baseDirectory = baseDirectory.isEmpty ? "." : baseDirectory
        self.boardDirectories = boardDirectories
        self.profileDirectories = profileDirectories
    }

    /// Runs `body`, recording its error instead of stopping.
    private func attempt<T>(_ body: () throws(ConfigError) -> T) -> T? {
        do { return try body() } catch { sink.errors.append(error); return nil }
    }

    /// A path relative to the config file's directory, unless absolute.
    func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : "\(baseDirectory)/\(path)"
    }

    func read() throws(ConfigErrors) -> GatewayConfig {
        let map: ConfigMapping
        do { map = try root.mapping() } catch { throw ConfigErrors([error]) }

        // gateway: { id, board, state_dir, interval, log_level }
        var gatewayID: GatewayID?
        var board: Board?
        var stateDirectory = "/var/lib/metergate"
        var interval: Duration = .seconds(900)
        var logLevel = "info"
        if let g = attempt({ () throws(ConfigError) in try map.required("gateway", expected: "a mapping with id and board").mapping() }) {
            gatewayID = attempt { () throws(ConfigError) in try Self.identifier(g.required("id", expected: "the gateway id (one MQTT topic level)")) }
            if let boardNode = attempt({ () throws(ConfigError) in try g.required("board", expected: "a board name from boards/, e.g. sim or raspberry-pi-4") }) {
                board = attempt { () throws(ConfigError) in try Board.find(name: boardNode.string(), at: boardNode, directories: boardDirectories) }
            }
            if let s = attempt({ () throws(ConfigError) in try g.optional("state_dir")?.string() }), let s { stateDirectory = resolve(s) }
            if let node = g.optional("interval"), let d = attempt({ () throws(ConfigError) in try Self.interval(node) }) { interval = d }
            if let l = attempt({ () throws(ConfigError) in try g.optional("log_level")?.oneOf(LogLevelName.self) }), let l { logLevel = l.rawValue }
            attempt { () throws(ConfigError) in try g.finish() }
        }

        // profiles: [dir, …] (extra profile directories, relative to the config file)
        var directories = profileDirectories
        if let list = attempt({ () throws(ConfigError) in try map.optional("profiles")?.list() }), let list {
            for node in list { if let s = attempt({ () throws(ConfigError) in try node.string() }) { directories.append(resolve(s)) } }
        }
        var profiles = ProfileLibrary()
        do { profiles = try ProfileLibrary(directories: directories) } catch { sink.errors += error.errors }

        // buses: [{ id, tcp: {host, port} | rtu: {device, baud, parity, data_bits, stop_bits, rs485}, timeout }]
        var buses: [BusConfig] = []
        if let list = attempt({ () throws(ConfigError) in try map.optional("buses")?.list() }), let list {
            for node in list {
                if let bus = attempt({ () throws(ConfigError) in try Self.bus(node, board: board) }) {
                    if buses.contains(where: { $0.id == bus.id }) {
                        sink.errors.append(node.error("duplicate bus id '\(bus.id)'"))
                    } else {
                        buses.append(bus)
                    }
                }
            }
        }

        // meters: [{ id, bus, unit, profile, poll, rated_power, envelope, serial }]
        var meters: [MeterConfig] = []
        // Optional: a gateway may count S0 pulses or read rails only; at least one source of some kind is checked below.
        if let list = attempt({ () throws(ConfigError) in try map.optional("meters")?.list() }) ?? nil {
            for node in list {
                guard let meter = attempt({ () throws(ConfigError) in try Self.meter(node, buses: buses, profiles: profiles) }) else { continue }
                if meters.contains(where: { $0.id == meter.id }) {
                    sink.errors.append(node.error("duplicate meter id '\(meter.id)': each meter stream needs its own id"))
                } else {
                    meters.append(meter)
                }
            }
        }

        let mqtt = attempt { () throws(ConfigError) in try MQTTConfig.read(map.optional("mqtt"), resolve: resolve) } ?? nil
        let stateDir = stateDirectory
        let signing = attempt { () throws(ConfigError) in try Self.signing(map.optional("signing"), stateDirectory: stateDir, resolve: resolve) } ?? nil
        let outbox = attempt { () throws(ConfigError) in try OutboxConfiguration.read(map.optional("outbox"), stateDirectory: stateDir, resolve: resolve) } ?? nil
        let metrics = attempt { () throws(ConfigError) in try Self.metrics(map.optional("metrics")) } ?? nil
        let rails = attempt { () throws(ConfigError) in try Self.rails(map.optional("rails"), resolve: resolve) } ?? nil
        var pulses: [PulseConfig] = []
        if let list = attempt({ () throws(ConfigError) in try map.optional("pulses")?.list() }), let list {
            for node in list {
                guard let pulse = attempt({ () throws(ConfigError) in try Self.pulse(node, board: board) }) else { continue }
                if meters.contains(where: { $0.id == pulse.id }) || pulses.contains(where: { $0.id == pulse.id }) {
                    sink.errors.append(node.error("duplicate stream id '\(pulse.id)': each stream needs its own id"))
                } else {
                    pulses.append(pulse)
                }
            }
        }
        if let rails {
            for (index, source) in rails.sources.enumerated() where meters.contains(where: { $0.id == source.id }) || pulses.contains(where: { $0.id == source.id }) {
                sink.errors.append(ConfigError(file: root.file, keyPath: "rails.sources[\(index)].id", message: "'\(source.id)' is already a meter id: each stream needs its own id"))
            }
        }
        attempt { () throws(ConfigError) in try map.finish() }

        guard sink.errors.isEmpty, let gatewayID, let board, let mqtt, let signing, let outbox, let metrics, let rails else {
            throw ConfigErrors(sink.errors)
        }
        return GatewayConfig(file: root.file, gateway: gatewayID, board: board, stateDirectory: stateDirectory, interval: interval,
                             buses: buses, meters: meters, mqtt: mqtt, signing: signing, outbox: outbox,
                             profileDirectories: directories, profiles: profiles, logLevel: logLevel, metrics: metrics, rails: rails, pulses: pulses)
    }

    static func identifier(_ node: ConfigNode) throws(ConfigError) -> Identifier {
        let s = try node.string()
        do { return try Identifier(validating: s) } catch { throw node.error("id '\(s)' \(error)") }
    }

    static func interval(_ node: ConfigNode) throws(ConfigError) -> Duration {
        let d = try node.duration()
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        guard ms >= 1000, ms <= 3_600_000, 3_600_000 % ms == 0 else {
            throw node.error("expected an interval from 1s to 1h that divides an hour evenly (e.g. 1s, 1m, 5m, 15m, 1h)")
        }
        return d
    }

    static func bus(_ node: ConfigNode, board: Board?) throws(ConfigError) -> BusConfig {
        let m = try node.mapping()
        let id = try identifier(m.required("id", expected: "the bus id"))
        let timeout = try m.optional("timeout")?.duration() ?? .milliseconds(500)
        let tcp = m.optional("tcp")
        let rtu = m.optional("rtu")
        let transport: ModbusTransport
        var directionLine: Board.GPIOLineRef?
        var rtsDelay: Int?
        switch (tcp, rtu) {
        case (let t?, nil):
            let tm = try t.mapping()
            let host = try tm.required("host", expected: "a host name or address").string()
            let port = try tm.optional("port")?.int(in: 1...65535) ?? 502
            try tm.finish()
            transport = .tcp(host: host, port: port)
        case (nil, let r?):
            let rm = try r.mapping()
            let deviceNode = try rm.required("device", expected: "a serial device path, or a port name from the board file")
            var device = try deviceNode.string()
            if !device.hasPrefix("/"), let port = board?.serialPorts.first(where: { $0.name == device }) {
                device = port.device
            }
            // The board port behind the device, named or given by path: its RS-485 mode and direction line.
            let port = board?.serialPorts.first { $0.device == device }
            directionLine = port?.directionLine
            let baud = try rm.optional("baud")?.int(in: 300...4_000_000) ?? 9600
            let parity = try rm.optional("parity")?.oneOf(ParityName.self) ?? .none
            let dataBits = try rm.optional("data_bits")?.int(in: 5...8) ?? 8
            let stopBits = try rm.optional("stop_bits")?.int(in: 1...2) ?? 1
            let rs485 = try rm.optional("rs485")?.bool() ?? (port?.rs485 ?? false)
            if let delay = rm.optional("rts_delay") {
                guard directionLine != nil else {
                    throw delay.error("rts_delay applies only to a port whose RS-485 direction MeterGate drives from a GPIO (direction_gpio in the board file); \(device) has none")
                }
                rtsDelay = try delay.int(in: 0...100_000)
            }
            try rm.finish()
            transport = .rtu(SerialSettings(device: device, baud: baud, parity: parity.settings, dataBits: dataBits, stopBits: stopBits, rs485: rs485))
        case (nil, nil):
            throw node.error("expected either a tcp: or an rtu: section")
        case (.some, .some):
            throw node.error("a bus has either tcp: or rtu:, not both")
        }
        var timing = BusTiming.defaults(for: transport)
        if let pause = try m.optional("unit_pause")?.duration() { timing.unitSwitchDelay = pause }
        if let cap = try m.optional("max_backoff")?.duration() {
            guard cap >= .seconds(1) else { throw node.error("max_backoff: expected at least 1s") }
            timing.maximumBackoff = cap
        }
        try m.finish()
        return BusConfig(id: id, transport: transport, responseTimeout: timeout, timing: timing, directionLine: directionLine, rtsDelayMicroseconds: rtsDelay)
    }

    static func signing(_ node: ConfigNode?, stateDirectory: String, resolve: (String) -> String) throws(ConfigError) -> SigningConfig {
        var config = SigningConfig(keyFile: "\(stateDirectory)/signing.key", algorithm: .eddsa, previousKeys: [])
        guard let node else { return config }
        let m = try node.mapping()
        if let k = try m.optional("key")?.string() { config.keyFile = resolve(k) }
        config.algorithm = try m.optional("algorithm")?.oneOf(SigningAlgorithm.self) ?? .eddsa
        config.selfCheck = try m.optional("self_check")?.bool() ?? true
        for item in try m.optional("previous_keys")?.list() ?? [] {
            let path = resolve(try item.string())
            guard FileManager.default.isReadableFile(atPath: path) else { throw item.error("cannot read the public key file \(path)") }
            config.previousKeys.append(path)
        }
        for item in try m.optional("rotations")?.list() ?? [] {
            let path = resolve(try item.string())
            guard FileManager.default.isReadableFile(atPath: path) else { throw item.error("cannot read the rotation statement \(path)") }
            config.rotations.append(path)
        }
        try m.finish()
        return config
    }

    static func pulse(_ node: ConfigNode, board: Board?) throws(ConfigError) -> PulseConfig {
        let m = try node.mapping()
        let id = try identifier(m.required("id", expected: "the stream id (one MQTT topic level)"))
        let inputNode = try m.required("input", expected: "an S0 input name from the board file's s0_inputs")
        let name = try inputNode.string()
        guard let board else { throw inputNode.error("no board to take S0 input '\(name)' from") }
        guard let input = board.pulseInputs.first(where: { $0.name == name }) else {
            let known = board.pulseInputs.map(\.name).joined(separator: ", ")
            throw inputNode.error("board '\(board.id)' has no S0 input '\(name)' (its inputs: \(known.isEmpty ? "none" : known))")
        }
        let impulses = try m.required("impulses_per_kwh", expected: "the meter's pulse constant, e.g. 1000").int(in: 1...1_000_000)
        let minimum = try m.optional("minimum_pulse")?.duration() ?? .milliseconds(20)
        let rated = try m.optional("rated_power")?.double()
        let envelope = try m.optional("envelope")?.oneOf(RecordEnvelope.self) ?? .jws
        try m.finish()
        return PulseConfig(id: id, input: input, impulsesPerKilowattHour: UInt64(impulses), minimumPulse: minimum, ratedPowerWatts: rated, envelope: envelope)
    }

    static func rails(_ node: ConfigNode?, resolve: (String) -> String) throws(ConfigError) -> RailsConfig {
        var config = RailsConfig(sysfsRoot: "/", nvmlLibrary: "libnvidia-ml.so.1", pollInterval: .seconds(1), sources: [])
        guard let node else { return config }
        let m = try node.mapping()
        if let root = try m.optional("sysfs_root")?.string() { config.sysfsRoot = root.hasPrefix("/") ? root : resolve(root) }
        if let nvml = m.optional("nvml_library") {
            let text = try nvml.string()
            config.nvmlLibrary = text == "none" ? nil : text
        }
        config.pollInterval = try m.optional("poll")?.duration() ?? .seconds(1)
        guard config.pollInterval >= .milliseconds(100) else { throw node.error("poll: expected at least 100ms") }
        for item in try m.optional("sources")?.list() ?? [] {
            let s = try item.mapping()
            let id = try identifier(s.required("id", expected: "the stream id (one MQTT topic level)"))
            if config.sources.contains(where: { $0.id == id }) { throw item.error("duplicate rail stream id '\(id)'") }
            let rail = try s.required("rail", expected: "a rail id from `metergate scan --rails`, e.g. hwmon:ina3221@1-0040:VDD_GPU_SOC").string()
            let rated = try s.optional("rated_power")?.double()
            let envelope = try s.optional("envelope")?.oneOf(RecordEnvelope.self) ?? .jws
            try s.finish()
            config.sources.append(.init(id: id, rail: rail, ratedPowerWatts: rated, envelope: envelope))
        }
        try m.finish()
        return config
    }

}
