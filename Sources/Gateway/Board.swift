import ConfigFile
import Foundation

/// A supported gateway board, read from `boards/NAME.yaml`: its serial ports, RS-485 direction lines, S0
/// inputs, status LED and power rails.
public struct Board: Sendable, Hashable {
    public struct SerialPort: Sendable, Hashable {
        public var name: String
        public var device: String
        /// The UART driver does RS-485 direction itself (TIOCSRS485).
        public var rs485: Bool
        /// A GPIO line that drives the transceiver's DE/RE pins, where the HAT needs one: active while
        /// MeterGate transmits (high, unless the board file says `active_low: true`).
        public var directionLine: GPIOLineRef?
    }
    public struct GPIOLineRef: Sendable, Hashable {
        public var chip: String
        public var line: Int
        /// The line's active level is low (only a direction line may say so: `active_low` in the board file).
        public var activeLow: Bool

        public init(chip: String, line: Int, activeLow: Bool = false) {
            self.chip = chip
            self.line = line
            self.activeLow = activeLow
        }
    }
    public struct PulseInput: Sendable, Hashable {
        public var name: String
        public var line: GPIOLineRef
    }
    public enum RailKind: String, Sendable, Hashable, CaseIterable {
        case nvml, hwmon, rapl, ina3221
    }

    public var id: String
    public var name: String
    public var file: String
    public var serialPorts: [SerialPort]
    public var pulseInputs: [PulseInput]
    public var statusLED: GPIOLineRef?
    public var rails: [RailKind]

    /// Finds and reads `NAME.yaml` in the board directories; an unknown name lists the known ones.
    static func find(name: String, at node: ConfigNode, directories: [String]) throws(ConfigError) -> Board {
        var known: [String] = []
        for dir in directories {
            let path = "\(dir)/\(name).yaml"
            if FileManager.default.fileExists(atPath: path) { return try load(path: path) }
            known += ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }
        }
        let searched = directories.isEmpty ? "no board directory (set METERGATE_DATA_DIR or --boards DIR)" : directories.joined(separator: ", ")
        let list = known.isEmpty ? "no board files found in \(searched)" : "known boards: \(Set(known).sorted().joined(separator: ", "))"
        throw node.error("unknown board '\(name)' (\(list))")
    }

    /// Reads one board file.
    public static func load(path: String) throws(ConfigError) -> Board {
        try parse(ConfigNode.load(path: path))
    }

    /// Reads a board from its parsed file.
    public static func parse(_ root: ConfigNode) throws(ConfigError) -> Board {
        let m = try root.mapping()
        let id = try m.required("board", expected: "the board id (the file name without .yaml)").string()
        let name = try m.required("name", expected: "a human-readable board name").string()
        func lineRef(_ node: ConfigNode, activeLevel: Bool = false) throws(ConfigError) -> GPIOLineRef {
            let l = try node.mapping()
            var ref = GPIOLineRef(chip: try l.required("chip", expected: "a GPIO chip name, e.g. gpiochip0").string(),
                                  line: try l.required("line", expected: "a line offset on the chip").int(in: 0...1023))
            if activeLevel { ref.activeLow = try l.optional("active_low")?.bool() ?? false }
            try l.finish()
            return ref
        }
        var ports: [SerialPort] = []
        for node in try m.optional("serial")?.list() ?? [] {
            let p = try node.mapping()
            ports.append(SerialPort(
                name: try p.required("name", expected: "a port name, e.g. rs485-0").string(),
                device: try p.required("device", expected: "a device path, e.g. /dev/ttyAMA0").string(),
                rs485: try p.optional("rs485")?.bool() ?? false,
                directionLine: try p.optional("direction_gpio").map { node throws(ConfigError) in try lineRef(node, activeLevel: true) }))
            try p.finish()
        }
        var inputs: [PulseInput] = []
        for node in try m.optional("s0_inputs")?.list() ?? [] {
            let p = try node.mapping()
            inputs.append(PulseInput(name: try p.required("name", expected: "an input name, e.g. s0-1").string(),
                                     line: try lineRef(p.required("gpio", expected: "the GPIO line of the input"))))
            try p.finish()
        }
        let led = try m.optional("status_led").map { node throws(ConfigError) in try lineRef(node) }
        var rails: [RailKind] = []
        for node in try m.optional("rails")?.list() ?? [] { rails.append(try node.oneOf(RailKind.self)) }
        _ = m.optional("notes")
        try m.finish()
        guard id == (root.file as NSString).lastPathComponent.replacingOccurrences(of: ".yaml", with: "") else {
            throw root.error("board id '\(id)' does not match the file name")
        }
        return Board(id: id, name: name, file: root.file, serialPorts: ports, pulseInputs: inputs, statusLED: led, rails: rails)
    }
}
