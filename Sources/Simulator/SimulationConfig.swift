import ConfigFile
import Foundation
import MeterCore
import Modbus

/// One simulated meter to serve: where, which profile, what load and which faults.
public struct SimulatedMeterSpec: Sendable {
    public var unit: Int
    public var profile: MeterProfile
    public var curve: LoadCurve
    public var importWattHours: Double
    public var exportWattHours: Double
    public var faults: [Fault]

    public init(unit: Int, profile: MeterProfile, curve: LoadCurve, importWattHours: Double = 0, exportWattHours: Double = 0, faults: [Fault] = []) {
        self.unit = unit
        self.profile = profile
        self.curve = curve
        self.importWattHours = importWattHours
        self.exportWattHours = exportWattHours
        self.faults = faults
    }

    public func makeMeter(clock: any TimeSource = SystemTimeSource()) -> SimulatedMeter {
        SimulatedMeter(profile: profile, curve: curve, importWattHours: importWattHours, exportWattHours: exportWattHours,
                       faults: faults, serialNumber: String(format: "SIM%05d", unit), clock: clock)
    }
}

/// What `metergate simulate --config FILE` serves: a small YAML file.
///
/// ```yaml
/// tcp: 127.0.0.1:1502                       # optional
/// rtu: { device: /tmp/ttyA, baud: 9600, parity: N, emulate_wire_time: true }   # optional
/// meters:
///   - unit: 1
///     profile: eastron-sdm630
///     load: { sine: { base: 2000, amplitude: 500, period: 60s } }   # or { constant: 1500 } or { csv: day.csv }
///     import_kwh: 1234.5
///     faults: [ "no-answer/every=3", "slow:300ms/after=60" ]
/// ```
public struct SimulationConfig: Sendable {
    public var tcp: (host: String, port: Int)?
    public var rtu: SerialSettings?
    public var emulateWireTime: Bool
    public var meters: [SimulatedMeterSpec]

    public init(tcp: (host: String, port: Int)?, rtu: SerialSettings?, emulateWireTime: Bool, meters: [SimulatedMeterSpec]) {
        self.tcp = tcp
        self.rtu = rtu
        self.emulateWireTime = emulateWireTime
        self.meters = meters
    }

    /// Reads the file; relative CSV paths are taken from the file's directory.
    public static func load(path: String, profiles: ProfileLibrary) throws(ConfigError) -> SimulationConfig {
        let root = try ConfigNode.load(path: path)
        let map = try root.mapping()
        let directory = (path as NSString).deletingLastPathComponent
        var tcp: (String, Int)?
        if let node = map.optional("tcp") {
            guard let hp = parseHostPort(try node.string()) else { throw node.error("expected HOST:PORT") }
            tcp = hp
        }
        var rtu: SerialSettings?
        var emulate = false
        if let node = map.optional("rtu") {
            let m = try node.mapping()
            var s = SerialSettings(device: try m.required("device", expected: "the serial device or pty").string())
            s.baud = try m.optional("baud")?.int(in: 300...4_000_000) ?? 9600
            if let p = m.optional("parity") {
                guard let parity = SerialSettings.Parity(rawValue: Character(try p.string().uppercased().prefix(1).description)) else {
                    throw p.error("expected N, E or O")
                }
                s.parity = parity
            }
            s.dataBits = try m.optional("data_bits")?.int(in: 5...8) ?? 8
            s.stopBits = try m.optional("stop_bits")?.int(in: 1...2) ?? 1
            emulate = try m.optional("emulate_wire_time")?.bool() ?? false
            try m.finish()
            rtu = s
        }
        var meters: [SimulatedMeterSpec] = []
        for node in try map.required("meters", expected: "a list of simulated meters").list() {
            let m = try node.mapping()
            let unitNode = try m.required("unit", expected: "the unit id, 1…247")
            let unit = try unitNode.int(in: 1...247)
            if meters.contains(where: { $0.unit == unit }) { throw unitNode.error("unit \(unit) appears twice") }
            let profileNode = try m.required("profile", expected: "a profile id")
            let id = try profileNode.string()
            guard let profile = profiles[id] else {
                throw profileNode.error("no profile '\(id)' (known: \(profiles.profiles.keys.sorted().joined(separator: ", ")))")
            }
            var curve = LoadCurve.constant(watts: 2000)
            if let loadNode = m.optional("load") { curve = try parseLoad(loadNode, directory: directory) }
            var faults: [Fault] = []
            for f in try m.optional("faults")?.list() ?? [] {
                let text = try f.string()
                guard let fault = Fault.parse(text) else { throw f.error("expected a fault such as no-answer, slow:500ms, exception:2, corrupt, reset, replace:0.5, rollover (with /every=N, /after=S, /until=S), found '\(text)'") }
                faults.append(fault)
            }
            let spec = SimulatedMeterSpec(unit: unit, profile: profile, curve: curve,
                                          importWattHours: (try m.optional("import_kwh")?.double() ?? 0) * 1000,
                                          exportWattHours: (try m.optional("export_kwh")?.double() ?? 0) * 1000, faults: faults)
            try m.finish()
            meters.append(spec)
        }
        try map.finish()
        if meters.isEmpty { throw root.error("meters: at least one simulated meter is needed") }
        return SimulationConfig(tcp: tcp, rtu: rtu, emulateWireTime: emulate, meters: meters)
    }

    static func parseLoad(_ node: ConfigNode, directory: String) throws(ConfigError) -> LoadCurve {
        let m = try node.mapping()
        let curve: LoadCurve
        if let c = m.optional("constant") {
            curve = .constant(watts: try c.double())
        } else if let s = m.optional("sine") {
            let sm = try s.mapping()
            curve = .sine(baseWatts: try sm.required("base", expected: "watts").double(),
                          amplitudeWatts: try sm.required("amplitude", expected: "watts").double(),
                          period: try sm.required("period", expected: "a duration such as 60s").duration())
            try sm.finish()
        } else if let c = m.optional("csv") {
            let file = try c.string()
            let path = file.hasPrefix("/") || directory.isEmpty ? file : "\(directory)/\(file)"
            do { curve = .recorded(try RecordedLoad.load(path: path)) } catch { throw c.error(error.description) }
        } else {
            throw node.error("expected one of constant: WATTS, sine: {base, amplitude, period} or csv: FILE")
        }
        try m.finish()
        return curve
    }

    /// Parses the command-line load form: `constant:W`, `sine:BASE:AMPLITUDE:PERIOD` or `csv:PATH`.
    public static func parseLoad(_ text: String) -> LoadCurve? {
        let parts = text.split(separator: ":", maxSplits: 3).map(String.init)
        switch parts.first {
        case "constant": return parts.count == 2 ? Double(parts[1]).map { .constant(watts: $0) } : nil
        case "sine":
            guard parts.count == 4, let b = Double(parts[1]), let a = Double(parts[2]), let p = parseDuration(parts[3]) else { return nil }
            return .sine(baseWatts: b, amplitudeWatts: a, period: p)
        case "csv":
            guard parts.count >= 2, let r = try? RecordedLoad.load(path: parts.dropFirst().joined(separator: ":")) else { return nil }
            return .recorded(r)
        default: return nil
        }
    }
}

/// `HOST:PORT` with a port 0…65535.
public func parseHostPort(_ text: String) -> (host: String, port: Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
    let host = String(text[..<colon])
    return host.isEmpty ? nil : (host, port)
}
