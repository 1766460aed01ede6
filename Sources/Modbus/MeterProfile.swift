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
    }
    public var quantity: Quantity
    public var space: Space
    /// 0-based wire address.
    public var address: Int
    public var type: RegisterType
    public var wordOrder: WordOrder
    public var byteOrder: ByteOrder
    public var unit: MeterCore.Unit
    /// Multiply the raw value by this to get `unit` (e.g. 0.01 for centi-units).
    public var scale: Double
    /// Where the register's meaning comes from, when it is not from the manufacturer's manual.
    public var note: String?

    public init(quantity: Quantity, space: Space, address: Int, type: RegisterType, wordOrder: WordOrder = .bigEndian,
                byteOrder: ByteOrder = .bigEndian, unit: MeterCore.Unit, scale: Double = 1, note: String? = nil) {
        self.quantity = quantity
        self.space = space
        self.address = address
        self.type = type
        self.wordOrder = wordOrder
        self.byteOrder = byteOrder
        self.unit = unit
        self.scale = scale
        self.note = note
    }

    /// The registers the field occupies.
    public var registers: Range<Int> { address..<(address + type.registerCount) }
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
    public var fields: [RegisterField]

    public init(id: String, manufacturer: String, model: String, maxRegistersPerRequest: Int = 125, maxGap: Int = 0,
                interRequestDelay: Duration = .zero, fields: [RegisterField]) {
        self.id = id
        self.manufacturer = manufacturer
        self.model = model
        self.maxRegistersPerRequest = maxRegistersPerRequest
        self.maxGap = maxGap
        self.interRequestDelay = interRequestDelay
        self.fields = fields
    }

    public func field(_ quantity: Quantity) -> RegisterField? { fields.first { $0.quantity == quantity } }
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
        _ = map.optional("notes")
        var fields: [RegisterField] = []
        for node in try map.required("values", expected: "a list of register fields").list() {
            let f = try node.mapping()
            let quantity = Quantity(try f.required("quantity", expected: "a quantity name, e.g. power").string())
            if fields.contains(where: { $0.quantity == quantity }) { throw node.error("quantity '\(quantity)' appears twice") }
            let address = try f.required("address", expected: "the 0-based register address").int(in: 0...65535)
            let type = try f.required("type", expected: "a register type").oneOf(RegisterType.self)
            let unit = try f.optional("unit")?.oneOf(MeterCore.Unit.self) ?? MeterCore.Unit.none
            let field = RegisterField(
                quantity: quantity,
                space: try f.optional("function")?.oneOf(RegisterField.Space.self) ?? defaultSpace,
                address: address, type: type,
                wordOrder: try f.optional("word_order")?.oneOf(WordOrder.self) ?? defaultWordOrder,
                byteOrder: try f.optional("byte_order")?.oneOf(ByteOrder.self) ?? defaultByteOrder,
                unit: unit,
                scale: try f.optional("scale")?.double() ?? 1,
                note: try f.optional("note")?.string())
            try f.finish()
            if field.address + type.registerCount > 65536 { throw node.error("the value runs past register 65535") }
            fields.append(field)
        }
        try map.finish()
        return MeterProfile(id: id, manufacturer: manufacturer, model: model, maxRegistersPerRequest: maxRegisters,
                            maxGap: maxGap, interRequestDelay: delay, fields: fields)
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
}
