import ConfigFile
import Foundation
import MeterCore

/// Where a meter keeps a value: register space (function code), address, encoding, unit and scale.
public struct RegisterField: Sendable, Hashable {
    public enum Space: String, Sendable, Hashable, CaseIterable {
        /// FC 04 input registers.
        case input
        /// FC 03 holding registers.
        case holding

        /// The Modbus function code that reads this space.
        public var functionCode: Int { self == .input ? 4 : 3 }
    }
    public var quantity: Quantity
    public var space: Space
    /// 0-based wire address (for a SunSpec profile: the offset from the model's ID register).
    public var address: Int
    public var type: RegisterType
    public var wordOrder: WordOrder
    public var byteOrder: ByteOrder
    public var unit: MeterCore.Unit
    /// Multiply the raw value by this to get `unit` (e.g. 0.01 for centi-units).
    public var scale: Double
    /// A SunSpec-style scale-factor register (signed int16 exponent, value = raw × 10^sf) in the same space.
    /// The planner keeps it in the same request as the value, because a meter may change it between requests.
    public var scaleFactorAddress: Int?
    /// Raw bit patterns that mean "not implemented" or "invalid" (SunSpec 0x8000, ABB 0xFFFF…): no value.
    public var sentinels: [UInt64]
    /// Where the register's meaning comes from, when it is not from the manufacturer's manual.
    public var note: String?

    public init(quantity: Quantity, space: Space, address: Int, type: RegisterType, wordOrder: WordOrder = .bigEndian,
                byteOrder: ByteOrder = .bigEndian, unit: MeterCore.Unit, scale: Double = 1, scaleFactorAddress: Int? = nil,
                sentinels: [UInt64] = [], note: String? = nil) {
        self.quantity = quantity
        self.space = space
        self.address = address
        self.type = type
        self.wordOrder = wordOrder
        self.byteOrder = byteOrder
        self.unit = unit
        self.scale = scale
        self.scaleFactorAddress = scaleFactorAddress
        self.sentinels = sentinels
        self.note = note
    }

    /// The registers the field's value occupies.
    public var registers: Range<Int> { address..<(address + type.registerCount) }

    /// Every register one read must cover to decode the field: the value and, if any, its scale factor.
    public var span: Range<Int> {
        guard let sf = scaleFactorAddress else { return registers }
        return min(address, sf)..<max(address + type.registerCount, sf + 1)
    }

    /// The same field moved by `offset` registers (a SunSpec model found at a base address).
    public func shifted(by offset: Int) -> RegisterField {
        var f = self
        f.address += offset
        f.scaleFactorAddress = scaleFactorAddress.map { $0 + offset }
        return f
    }
}

/// A register that tells which meter model answers: a fixed code, or a value in a plausible range.
public struct IdentificationCheck: Sendable, Hashable {
    public enum Expectation: Sendable, Hashable {
        /// The raw (unscaled) value is one of these codes.
        case oneOf([UInt64])
        /// The scaled value lies in this range (mbmd's probe: L1 voltage 230 V ± 10 %).
        case range(ClosedRange<Double>)
    }
    public var space: RegisterField.Space
    public var address: Int
    public var type: RegisterType
    public var wordOrder: WordOrder
    public var scale: Double
    public var expectation: Expectation
    public var note: String?

    public init(space: RegisterField.Space, address: Int, type: RegisterType, wordOrder: WordOrder = .bigEndian,
                scale: Double = 1, expectation: Expectation, note: String? = nil) {
        self.space = space
        self.address = address
        self.type = type
        self.wordOrder = wordOrder
        self.scale = scale
        self.expectation = expectation
        self.note = note
    }

    /// Whether `words` (the check's registers) identify the model.
    public func matches(_ words: [UInt16]) -> Bool {
        guard let value = decodeRegisters(words, as: type, wordOrder: wordOrder) else { return false }
        switch expectation {
        case .oneOf(let codes):
            switch value {
            case .unsigned(let v): return codes.contains(v)
            case .signed(let v): return v >= 0 && codes.contains(UInt64(v))
            // Only a whole number within UInt64 can be a code; UInt64(v) would trap on 1e30 or infinity.
            case .float(let v): return UInt64(exactly: v).map { codes.contains($0) } ?? false
            }
        case .range(let r):
            let v = value.doubleValue * scale
            return v.isFinite && r.contains(v)
        }
    }
}

/// A meter type's register map, read from a profile file so that a new meter needs no recompile.
public struct MeterProfile: Sendable, Hashable {
    public var id: String
    public var manufacturer: String
    public var model: String
    /// The largest number of registers the meter answers in one request (≤ 125).
    public var maxRegistersPerRequest: Int
    /// The largest run of unused registers worth reading to merge two requests.
    public var maxGap: Int
    /// Pause the meter needs between two requests on a shared bus.
    public var interRequestDelay: Duration
    /// For a SunSpec meter: the model id (201…204) whose block the field addresses are offsets into.
    /// The block's address is found on the device by ``SunSpecDiscovery`` from the `SunS` marker.
    public var sunspecModel: Int?
    /// Registers that identify this model during a scan.
    public var identification: [IdentificationCheck]
    public var fields: [RegisterField]
    /// What no meter of this model can measure beyond (`limits:`), for the plausibility bound of a meter
    /// configured without `rated_power`.
    public var limits: PowerLimits?
    /// Where the meter keeps its serial number (`identity:`); SunSpec meters name themselves in the common model.
    public var identity: IdentityRegisters?

    public init(id: String, manufacturer: String, model: String, maxRegistersPerRequest: Int = 125, maxGap: Int = 0,
                interRequestDelay: Duration = .zero, sunspecModel: Int? = nil, identification: [IdentificationCheck] = [],
                fields: [RegisterField]) {
        self.id = id
        self.manufacturer = manufacturer
        self.model = model
        self.maxRegistersPerRequest = maxRegistersPerRequest
        self.maxGap = maxGap
        self.interRequestDelay = interRequestDelay
        self.sunspecModel = sunspecModel
        self.identification = identification
        self.fields = fields
    }

    public func field(_ quantity: Quantity) -> RegisterField? { fields.first { $0.quantity == quantity } }

    /// The profile with every address moved by `offset`: a SunSpec profile placed where its model block was found.
    public func located(at offset: Int) -> MeterProfile {
        var p = self
        p.fields = fields.map { $0.shifted(by: offset) }
        return p
    }
}

extension MeterProfile {
    /// Reads a profile file (YAML). Errors name the file, the key path and what was expected.
    public static func load(path: String) throws(ConfigError) -> MeterProfile {
        try parse(ConfigNode.load(path: path))
    }

    /// Reads a profile from an already parsed document.
    public static func parse(_ root: ConfigNode) throws(ConfigError) -> MeterProfile {
        let map = try root.mapping()
        let id = try map.required("profile", expected: "the profile's id, e.g. eastron-sdm630").string()
        let manufacturer = try map.required("manufacturer", expected: "the manufacturer's name").string()
        let model = try map.required("model", expected: "the model name").string()
        let maxRegisters = try map.optional("max_registers")?.int(in: 1...125) ?? 125
        let maxGap = try map.optional("max_gap")?.int(in: 0...125) ?? 0
        let delay = try map.optional("inter_request_delay")?.duration() ?? .zero
        let defaultSpace = try map.optional("function")?.oneOf(RegisterField.Space.self) ?? .holding
        let defaultWordOrder = try map.optional("word_order")?.oneOf(WordOrder.self) ?? .bigEndian
        let defaultByteOrder = try map.optional("byte_order")?.oneOf(ByteOrder.self) ?? .bigEndian
        let sunspecModel = try map.optional("sunspec_model")?.int(in: 1...65534)
        _ = try map.optional("notes")?.string()

        // Scale-factor registers by name, so fields can say `scale_factor: W_SF`.
        var scaleFactors: [String: Int] = [:]
        if let sfMap = try map.optional("scale_factors")?.mapping() {
            for (name, node) in sfMap.all() { scaleFactors[name] = try node.int(in: 0...65535) }
        }

        var identification: [IdentificationCheck] = []
        for node in try map.optional("identify")?.list() ?? [] {
            let m = try node.mapping()
            let type = try m.optional("type")?.oneOf(RegisterType.self) ?? .u16
            let expectation: IdentificationCheck.Expectation
            if let codes = m.optional("equals") {
                expectation = .oneOf(try codes.list().map { (n) throws(ConfigError) in try Self.rawPattern(n) })
            } else if let range = m.optional("range") {
                let r = try range.list()
                guard r.count == 2 else { throw range.error("expected [low, high]") }
                let low = try r[0].double(), high = try r[1].double()
                guard low <= high else { throw range.error("expected low ≤ high, found [\(low), \(high)]") }
                expectation = .range(low...high)
            } else {
                throw node.error("an identify entry needs equals: [codes] or range: [low, high]")
            }
            identification.append(IdentificationCheck(
                space: try m.optional("function")?.oneOf(RegisterField.Space.self) ?? defaultSpace,
                address: try m.required("address", expected: "the 0-based register address").int(in: 0...65535),
                type: type,
                wordOrder: try m.optional("word_order")?.oneOf(WordOrder.self) ?? defaultWordOrder,
                scale: try m.optional("scale")?.double() ?? 1,
                expectation: expectation,
                note: try m.optional("note")?.string()))
            try m.finish()
        }

        var fields: [RegisterField] = []
        for node in try map.required("values", expected: "a list of register fields").list() {
            let f = try node.mapping()
            let quantity = Quantity(try f.required("quantity", expected: "a quantity name, e.g. power").string())
            if fields.contains(where: { $0.quantity == quantity }) { throw node.error("quantity '\(quantity)' appears twice") }
            let address = try f.required("address", expected: "the 0-based register address").int(in: 0...65535)
            let type = try f.required("type", expected: "a register type").oneOf(RegisterType.self)
            let unit = try f.optional("unit")?.oneOf(MeterCore.Unit.self) ?? MeterCore.Unit.none
            var sfAddress: Int?
            if let sfNode = f.optional("scale_factor") {
                let name = try sfNode.string()
                guard let a = scaleFactors[name] else {
                    throw sfNode.error("no scale factor '\(name)' under scale_factors: (known: \(scaleFactors.keys.sorted().joined(separator: ", ")))")
                }
                sfAddress = a
            }
            var sentinels: [UInt64] = []
            if let s = f.optional("sentinel") {
                if let list = try? s.list() { sentinels = try list.map { (n) throws(ConfigError) in try Self.rawPattern(n) } }
                else { sentinels = [try Self.rawPattern(s)] }
            }
            let field = RegisterField(
                quantity: quantity,
                space: try f.optional("function")?.oneOf(RegisterField.Space.self) ?? defaultSpace,
                address: address, type: type,
                wordOrder: try f.optional("word_order")?.oneOf(WordOrder.self) ?? defaultWordOrder,
                byteOrder: try f.optional("byte_order")?.oneOf(ByteOrder.self) ?? defaultByteOrder,
                unit: unit,
                scale: try f.optional("scale")?.double() ?? 1,
                scaleFactorAddress: sfAddress,
                sentinels: sentinels,
                note: try f.optional("note")?.string())
            try f.finish()
            if field.address + type.registerCount > 65536 { throw node.error("the value runs past register 65535") }
            if field.span.count > maxRegisters {
                throw node.error("the value and its scale factor span \(field.span.count) registers, more than max_registers (\(maxRegisters))")
            }
            if field.scale == 0 { throw node.error("scale: must not be 0") }
            fields.append(field)
        }
        var limits: PowerLimits?
        if let node = map.optional("limits") {
            let m = try node.mapping()
            limits = PowerLimits(maximumCurrentAmps: try m.required("max_current", expected: "the largest current per phase, in A").double(),
                                 nominalVoltage: try m.required("nominal_voltage", expected: "the phase-to-neutral voltage, in V").double(),
                                 phases: try m.required("phases", expected: "1, 2 or 3").int(in: 1...3))
            try m.finish()
            guard let l = limits, l.maximumCurrentAmps > 0, l.maximumCurrentAmps <= 1e6, l.nominalVoltage > 0, l.nominalVoltage <= 1e6 else {
                throw node.error("max_current and nominal_voltage must be positive (and at most 1e6)")
            }
        }
        let identity = try map.optional("identity").map { (node) throws(ConfigError) in
            try IdentityRegisters.parse(node, defaultSpace: defaultSpace, defaultWordOrder: defaultWordOrder)
        }
        try map.finish()
        if fields.isEmpty { throw root.error("values: the profile maps no registers") }
        var profile = MeterProfile(id: id, manufacturer: manufacturer, model: model, maxRegistersPerRequest: maxRegisters,
                                   maxGap: maxGap, interRequestDelay: delay, sunspecModel: sunspecModel,
                                   identification: identification, fields: fields)
        profile.limits = limits
        profile.identity = identity
        return profile
    }

    /// A raw bit pattern written as an integer (decimal or 0x hex), up to 64 bits.
    static func rawPattern(_ node: ConfigNode) throws(ConfigError) -> UInt64 {
        let text = try node.string().replacingOccurrences(of: "_", with: "")
        let value = text.hasPrefix("0x") || text.hasPrefix("0X") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        guard let value else { throw node.error("expected an unsigned integer (decimal or 0x…), found '\(text)'") }
        return value
    }
}

/// The profile files a gateway knows, by id, searched in a list of directories.
public struct ProfileLibrary: Sendable {
    public private(set) var profiles: [String: MeterProfile] = [:]
    public private(set) var files: [String: String] = [:]

    public init() {}

    /// Loads every `*.yaml` in `directories`; a later directory overrides an earlier one.
    public init(directories: [String]) throws(ConfigErrors) {
        var errors: [ConfigError] = []
        for dir in directories {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".yaml") }.sorted()
            for name in names {
                let path = "\(dir)/\(name)"
                do {
                    let p = try MeterProfile.load(path: path)
                    profiles[p.id] = p
                    files[p.id] = path
                } catch {
                    errors.append(error)
                }
            }
        }
        if !errors.isEmpty { throw ConfigErrors(errors) }
    }

    public subscript(id: String) -> MeterProfile? { profiles[id] }

    /// The SunSpec profile for a model id found on a device, if one is loaded.
    public func sunspec(model: Int) -> MeterProfile? {
        profiles.values.filter { $0.sunspecModel == model }.min { $0.id < $1.id }
    }
}

/// The most a meter model can measure: its largest current per phase at its nominal voltage on every phase.
public struct PowerLimits: Sendable, Hashable {
    public var maximumCurrentAmps: Double
    public var nominalVoltage: Double
    public var phases: Int

    public init(maximumCurrentAmps: Double, nominalVoltage: Double, phases: Int) {
        self.maximumCurrentAmps = maximumCurrentAmps
        self.nominalVoltage = nominalVoltage
        self.phases = phases
    }

    /// phases × voltage × current, in W.
    public var maximumPowerWatts: Double { Double(phases) * nominalVoltage * maximumCurrentAmps }
}
