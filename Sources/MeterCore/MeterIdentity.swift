/// Which physical meter answers: its manufacturer, model and serial number, as the meter itself reports them
/// (identity registers, SunSpec's common model) or as the config states them.
///
/// Everything here comes from a meter or a config, so it is hostile until cleaned: each part is cut to
/// ``maximumPartLength`` characters of `A-Z a-z 0-9 . _ -` (others become `-`), which keeps the source id
/// printable ASCII without `|` or `:` inside a part, as OCMF's `MS` and the record's `source.id` need.
public struct MeterIdentity: Sendable, Hashable, Codable, CustomStringConvertible {
    public let manufacturer: String
    public let model: String
    public let serial: String

    public static let maximumPartLength = 32

    /// An identity from raw parts; nil when the serial is empty after cleaning (a meter that reports no serial).
    public init?(manufacturer: String, model: String, serial: String) {
        let serial = Self.clean(serial)
        guard !serial.isEmpty else { return nil }
        self.manufacturer = Self.clean(manufacturer).lowercased()
        self.model = Self.clean(model)
        self.serial = serial
    }

    /// `eastron:SDM630:12345678`: what records name as their source (`source.id`, OCMF `MS`).
    public var sourceID: String { "\(manufacturer):\(model):\(serial)" }

    public var description: String { sourceID }

    /// Whether `text` is a serial number a config may state: 1 to 32 of `A-Z a-z 0-9 . _ -`.
    public static func isValidSerial(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= maximumPartLength && clean(text) == text
    }

    /// Trims spaces and NULs, replaces anything outside `A-Z a-z 0-9 . _ -` with `-`, and cuts to the maximum length.
    static func clean(_ text: String) -> String {
        let trimmed = text.utf8.drop { $0 == 0x20 || $0 == 0 }.reversed().drop { $0 == 0x20 || $0 == 0 }.reversed()
        let bytes = trimmed.prefix(maximumPartLength).map { byte -> UInt8 in
            let allowed = (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            return allowed ? byte : UInt8(ascii: "-")
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Where a record's `source.id` comes from (the record's `source.identity`).
public enum SourceIdentityOrigin: String, Sendable, Hashable, Codable, CaseIterable {
    /// Read from the meter (its identity registers or SunSpec common model).
    case read
    /// The serial stated in the gateway's config: the meter offers no identity, or did not answer it yet.
    case configured
    /// The meter answered with another serial than the config commissioned: an alarm; the energy is not `measured`.
    case mismatch
}

/// A signed statement that the meter behind a stream was replaced: the old meter's last counter values and the
/// new one's first. The stream goes on unbroken; the energy between the two readings is not known and not paid.
public struct MeterReplacement: Sendable, Hashable, Codable {
    /// The source id of the meter that answered before (`source.id` of the earlier records).
    public var old: String
    /// The source id of the meter that answers now.
    public var new: String
    /// When the new meter's first reading was taken (ms since the Unix epoch).
    public var atMillis: Int64
    /// The old meter's last import and export counters (mWh), as read.
    public var oldImport: MilliwattHours
    public var oldExport: MilliwattHours?
    /// The new meter's first import and export counters (mWh), as read.
    public var newImport: MilliwattHours
    public var newExport: MilliwattHours?

    public init(old: String, new: String, atMillis: Int64, oldImport: MilliwattHours, oldExport: MilliwattHours?,
                newImport: MilliwattHours, newExport: MilliwattHours?) {
        self.old = old
        self.new = new
        self.atMillis = atMillis
        self.oldImport = oldImport
        self.oldExport = oldExport
        self.newImport = newImport
        self.newExport = newExport
    }
}
