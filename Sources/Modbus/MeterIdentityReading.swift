import ConfigFile
import MeterCore

/// Where a meter model keeps its serial number (a profile's `identity:` section).
public struct IdentityRegisters: Sendable, Hashable {
    /// How the serial is encoded.
    public enum Encoding: Sendable, Hashable {
        /// An unsigned integer, written in decimal (Eastron: uint32 in two holding registers).
        case integer(RegisterType, WordOrder)
        /// ASCII, two characters per register, NUL or space padded (as SunSpec strings).
        case text(registers: Int)
    }
    public var space: RegisterField.Space
    public var address: Int
    public var encoding: Encoding
    /// Where the address comes from, when not from the manufacturer's manual.
    public var note: String?

    public init(space: RegisterField.Space, address: Int, encoding: Encoding, note: String? = nil) {
        self.space = space
        self.address = address
        self.encoding = encoding
        self.note = note
    }

    public var registerCount: Int {
        switch encoding {
        case .integer(let type, _): return type.registerCount
        case .text(let n): return n
        }
    }

    /// The serial the registers hold; nil when they hold none (0, all ones, or an empty string).
    public func serial(from words: [UInt16]) -> String? {
        switch encoding {
        case .integer(let type, let order):
            guard case .unsigned(let v)? = decodeRegisters(words, as: type, wordOrder: order) else { return nil }
            let allOnes = type.registerCount >= 4 ? UInt64.max : (UInt64(1) << UInt64(16 * type.registerCount)) - 1
            return v == 0 || v == allOnes ? nil : String(v)
        case .text:
            let text = sunspecString(words[...])
            return text.isEmpty ? nil : text
        }
    }

    /// Encodes `serial` as these registers (the simulator serves it); nil when it does not fit.
    public func registers(for serial: String) -> [UInt16]? {
        switch encoding {
        case .integer(let type, let order):
            guard let v = UInt64(serial) else { return nil }
            return encodeRegisters(.unsigned(v), as: type, wordOrder: order)
        case .text(let n): return sunspecRegisters(serial, registers: n)
        }
    }

    /// Reads `identity:` from a profile: `{ function, address, type: uint16|uint32|uint64|string, registers, word_order, note }`.
    static func parse(_ node: ConfigNode, defaultSpace: RegisterField.Space, defaultWordOrder: WordOrder) throws(ConfigError) -> IdentityRegisters {
        let section = try node.mapping()
        let serialNode = try section.required("serial", expected: "where the meter keeps its serial number: { address, type }")
        let m = try serialNode.mapping()
        let space = try m.optional("function")?.oneOf(RegisterField.Space.self) ?? defaultSpace
        let address = try m.required("address", expected: "the 0-based register address").int(in: 0...65535)
        let typeNode = try m.required("type", expected: "u16, u32, u64 or string")
        let encoding: Encoding
        if try typeNode.string() == "string" {
            encoding = .text(registers: try m.required("registers", expected: "how many registers the string occupies").int(in: 1...32))
        } else {
            let type = try typeNode.oneOf(RegisterType.self)
            guard [.u16, .u32, .u64].contains(type) else { throw typeNode.error("a serial number is u16, u32, u64 or string, found '\(type.rawValue)'") }
            encoding = .integer(type, try m.optional("word_order")?.oneOf(WordOrder.self) ?? defaultWordOrder)
        }
        let registers = IdentityRegisters(space: space, address: address, encoding: encoding, note: try m.optional("note")?.string())
        try m.finish()
        try section.finish()
        if address + registers.registerCount > 65536 { throw serialNode.error("the serial runs past register 65535") }
        return registers
    }
}

/// What an identity read found.
public enum IdentityReading: Sendable, Hashable {
    /// The meter named itself.
    case identified(MeterIdentity)
    /// The meter offers no identity: its profile names no identity registers, it refused them, or they hold none.
    case notOffered(String)
}

extension MeterProfile {
    /// Whether the profile says where the meter names itself (identity registers, or SunSpec's common model).
    public var offersIdentity: Bool { identity != nil || sunspecModel != nil }

    /// Reads the meter's serial from its identity registers (not for SunSpec profiles: their identity comes with
    /// discovery). A Modbus exception means the meter does not offer it; a timeout or broken frame is thrown.
    nonisolated(nonsending) public func readIdentity(unit: Int, from reader: any RegisterReader) async throws(ModbusError) -> IdentityReading {
        guard let identity else { return .notOffered("profile \(id) names no identity registers") }
        let words: [UInt16]
        do {
            words = try await reader.readRegisters(unit: unit, space: identity.space, address: identity.address, count: identity.registerCount)
        } catch {
            guard case .exception = error.kind else { throw error }
            return .notOffered("the meter refused its serial register \(identity.address) (FC \(identity.space.functionCode)): \(error)")
        }
        guard let serial = identity.serial(from: words), let found = MeterIdentity(manufacturer: manufacturer, model: model, serial: serial) else {
            return .notOffered("the serial register \(identity.address) holds no serial number")
        }
        return .identified(found)
    }
}

extension SunSpecDevice {
    /// The identity in the device's common model (`Mn`, `Md`, `SN`).
    public var identityReading: IdentityReading {
        guard let found = MeterIdentity(manufacturer: manufacturer, model: model, serial: serialNumber) else {
            return .notOffered("the SunSpec common model holds no serial number (SN)")
        }
        return .identified(found)
    }
}
