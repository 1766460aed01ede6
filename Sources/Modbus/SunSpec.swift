/// One model in a SunSpec device's chain.
public struct SunSpecModel: Sendable, Hashable {
    /// The model id (1 common, 201–204 integer meters, 211–214 float meters …).
    public var id: Int
    /// The address of the model's ID register.
    public var address: Int
    /// The model's length `L` (registers after the ID and L registers).
    public var length: Int
}

/// What SunSpec discovery found on a unit.
public struct SunSpecDevice: Sendable, Hashable {
    /// Where the `SunS` marker was.
    public var base: Int
    public var manufacturer: String
    public var model: String
    public var version: String
    public var serialNumber: String
    public var models: [SunSpecModel]

    /// The first meter model (201–204 or 211–214) in the chain.
    public var meterModel: SunSpecModel? { models.first { (201...204).contains($0.id) || (211...214).contains($0.id) } }
}

/// Finds SunSpec devices: the `SunS` marker, the common model (1) and the model chain.
public enum SunSpecDiscovery {
    /// Where devices put the marker, in the order tried (bikeshedder/sunspec's DEFAULT_DISCOVERY_ADDRESSES).
    public static let bases = [40000, 50000, 0]
    /// "SunS" in two big-endian registers.
    public static let marker: [UInt16] = [0x5375, 0x6E53]
    /// The chain's end: ID 0xFFFF.
    public static let endMarker: UInt16 = 0xFFFF

    /// Looks for the marker at each base and walks the chain. Returns nil when no base holds the marker.
    /// A timeout or a broken connection is thrown (the unit is dead, not "not SunSpec").
    nonisolated(nonsending) public static func discover(unit: Int, reader: any RegisterReader) async throws(ModbusError) -> SunSpecDevice? {
        for base in bases {
            let words: [UInt16]
            do { words = try await reader.readRegisters(unit: unit, space: .holding, address: base, count: 2) } catch {
                if case .exception = error.kind { continue }
                throw error
            }
            guard words == marker else { continue }
            return try await walk(unit: unit, base: base, reader: reader)
        }
        return nil
    }

    nonisolated(nonsending) static func walk(unit: Int, base: Int, reader: any RegisterReader) async throws(ModbusError) -> SunSpecDevice {
        var device = SunSpecDevice(base: base, manufacturer: "", model: "", version: "", serialNumber: "", models: [])
        var address = base + 2
        // A chain longer than this, or one that runs past the register space, is a broken device.
        for _ in 0..<64 where address + 2 <= 65536 {
            let header: [UInt16]
            do { header = try await reader.readRegisters(unit: unit, space: .holding, address: address, count: 2) } catch {
                if case .exception = error.kind { break }   // some devices end the chain with an illegal address
                throw error
            }
            if header[0] == endMarker { break }
            let model = SunSpecModel(id: Int(header[0]), address: address, length: Int(header[1]))
            device.models.append(model)
            if model.id == 1, model.length >= 65 {
                let common = try await reader.readRegisters(unit: unit, space: .holding, address: address + 2, count: 65)
                device.manufacturer = sunspecString(common[0..<16])
                device.model = sunspecString(common[16..<32])
                device.version = sunspecString(common[40..<48])
                device.serialNumber = sunspecString(common[48..<64])
            }
            address += 2 + model.length
        }
        return device
    }
}

/// A SunSpec string: two ASCII bytes per register, padded with NULs (or spaces).
public func sunspecString(_ words: ArraySlice<UInt16>) -> String {
    var bytes: [UInt8] = []
    for w in words { bytes += [UInt8(w >> 8), UInt8(w & 0xFF)] }
    if let end = bytes.firstIndex(of: 0) { bytes = Array(bytes[..<end]) }
    return String(decoding: bytes.filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self).trimmingCharacters(in: " ")
}

/// Encodes `text` as a SunSpec string of `registers` registers (used by the simulator).
public func sunspecRegisters(_ text: String, registers: Int) -> [UInt16] {
    var bytes = Array(text.utf8.prefix(registers * 2))
    bytes += [UInt8](repeating: 0, count: registers * 2 - bytes.count)
    return (0..<registers).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
}

extension String {
    fileprivate func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}
