/// A gateway or meter id that is safe to use as one MQTT topic level and as a file or SQL key.
///
/// Ids are checked once, at config load, so nothing downstream has to worry about `+`, `#`, `/`,
/// empty strings or control characters breaking a topic.
public struct Identifier: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public let rawValue: String

    /// Why a string cannot be an id.
    public enum Problem: Error, Hashable, Sendable, CustomStringConvertible {
        case empty
        case tooLong(Int)
        case forbiddenCharacter(Character)
        case controlCharacter(UInt32)
        case leadingOrTrailingSpace

        public var description: String {
            switch self {
            case .empty: return "must not be empty"
            case .tooLong(let n): return "is \(n) bytes long; at most \(Identifier.maximumLength) are allowed"
            case .forbiddenCharacter(let c):
                return "contains '\(c)', which would break an MQTT topic (ids may not contain '/', '+', '#' or '$' first)"
            case .controlCharacter(let scalar):
                return "contains the control character U+\(String(scalar, radix: 16, uppercase: true))"
            case .leadingOrTrailingSpace: return "must not begin or end with a space"
            }
        }
    }

    public static let maximumLength = 64

    /// Validates `string` as an id.
    public init(validating string: String) throws(Problem) {
        if let problem = Identifier.problem(with: string) { throw problem }
        self.rawValue = string
    }

    /// The first reason `string` is not a valid id, or nil if it is one.
    public static func problem(with string: String) -> Problem? {
        if string.isEmpty { return .empty }
        if string.utf8.count > maximumLength { return .tooLong(string.utf8.count) }
        if string.first == " " || string.last == " " { return .leadingOrTrailingSpace }
        if string.first == "$" { return .forbiddenCharacter("$") }
        for scalar in string.unicodeScalars {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) { return .controlCharacter(scalar.value) }
            if scalar == "/" || scalar == "+" || scalar == "#" { return .forbiddenCharacter(Character(scalar)) }
        }
        return nil
    }

    public var description: String { rawValue }
    public static func < (lhs: Identifier, rhs: Identifier) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(validating: string) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "id '\(string)' \(error)"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The id of one gateway: the second level of every topic it publishes.
public typealias GatewayID = Identifier
/// The id of one meter stream (a Modbus meter, a GPU, a rail, a pulse input or a virtual meter).
public typealias MeterID = Identifier
