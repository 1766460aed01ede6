import Foundation
import Yams

/// A YAML node with the file and key path it came from, for error messages that point at the right place.
///
/// Readers walk the tree with typed accessors; every accessor either returns a value of the expected type
/// or throws a ``ConfigError`` naming the file, the key path, the line and what was expected.
public struct ConfigNode: @unchecked Sendable {
    // `Yams.Node` is an immutable value tree; it is not marked Sendable upstream.
    let node: Node
    public let file: String
    public let keyPath: String

    init(node: Node, file: String, keyPath: String) {
        self.node = node
        self.file = file
        self.keyPath = keyPath
    }

    /// Parses YAML text. Syntax errors name the file, line and column.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> ConfigNode {
        do {
            // The basic resolver tags no scalar: the accessors below read each scalar's text and style, never
            // its tag, and the default resolver compiles seven regular expressions (ICU) to find tags.
            guard let node = try Yams.compose(yaml: text, .basic) else {
                throw ConfigError(file: file, keyPath: "", line: 1, column: 1, message: "the file is empty; expected a mapping of settings")
            }
            return ConfigNode(node: node, file: file, keyPath: "")
        } catch let error as ConfigError {
            throw error
        } catch let error as YamlError {
            throw Self.describe(error, file: file)
        } catch {
            throw ConfigError(file: file, keyPath: "", message: "cannot parse YAML: \(error)")
        }
    }

    /// Reads and parses a file; a missing or unreadable file is a ``ConfigError`` too.
    public static func load(path: String) throws(ConfigError) -> ConfigNode {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConfigError(file: path, keyPath: "", message: "no such file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, keyPath: "", message: "cannot read the file (permissions?)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, keyPath: "", message: "not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    private static func describe(_ error: YamlError, file: String) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return ConfigError(file: file, keyPath: "", line: mark.line, column: mark.column, message: "YAML syntax error: \(what)")
        case .composer(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return ConfigError(file: file, keyPath: "", line: mark.line, column: mark.column, message: "YAML error: \(what)")
        default:
            return ConfigError(file: file, keyPath: "", message: "YAML error: \(error)")
        }
    }

    /// Line and column of this node in its file (1-based), when known.
    public var line: Int { node.mark?.line ?? 0 }
    public var column: Int { node.mark?.column ?? 0 }

    /// An error located at this node.
    public func error(_ message: String) -> ConfigError {
        ConfigError(file: file, keyPath: keyPath, line: line, column: column, message: message)
    }

    var kindName: String {
        switch node {
        case .scalar(let s): return s.string.isEmpty ? "an empty value" : "the scalar '\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    // MARK: Scalars

    /// The node as a string scalar.
    public func string() throws(ConfigError) -> String {
        guard case .scalar(let s) = node else { throw error("expected a string, found \(kindName)") }
        return s.string
    }

    /// The node as an integer.
    public func int() throws(ConfigError) -> Int {
        guard case .scalar(let s) = node, s.style == .plain else { throw error("expected an integer, found \(kindName)") }
        let text = s.string.replacingOccurrences(of: "_", with: "")
        let value = text.hasPrefix("0x") || text.hasPrefix("0X") ? Int(text.dropFirst(2), radix: 16) : Int(text)
        guard let value else { throw error("expected an integer, found \(kindName)") }
        return value
    }

    /// The node as an integer within `range`.
    public func int(in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let v = try int()
        guard range.contains(v) else { throw error("expected an integer from \(range.lowerBound) to \(range.upperBound), found \(v)") }
        return v
    }

    /// The node as a number.
    public func double() throws(ConfigError) -> Double {
        guard case .scalar(let s) = node, s.style == .plain, let v = Double(s.string.replacingOccurrences(of: "_", with: "")), v.isFinite else {
            throw error("expected a number, found \(kindName)")
        }
        return v
    }

    /// The node as a boolean (`true`/`false`).
    public func bool() throws(ConfigError) -> Bool {
        guard case .scalar(let s) = node, s.style == .plain else { throw error("expected true or false, found \(kindName)") }
        switch s.string {
        case "true", "True", "TRUE", "yes": return true
        case "false", "False", "FALSE", "no": return false
        default: throw error("expected true or false, found \(kindName)")
        }
    }

    /// The node as one of a fixed set of words.
    public func oneOf<T: RawRepresentable & CaseIterable>(_ type: T.Type) throws(ConfigError) -> T where T.RawValue == String {
        let s = try string()
        guard let v = T(rawValue: s) else {
            let allowed = T.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            throw error("expected one of \(allowed), found '\(s)'")
        }
        return v
    }

    /// The node as a duration: a number with a unit (`500ms`, `15s`, `15m`, `1h`).
    public func duration() throws(ConfigError) -> Duration {
        let s = try string().trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where s.hasSuffix(suffix) {
            let number = s.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
            if let v = Double(number), v.isFinite, v >= 0 {
                // Checked: a number of any size is text here, and converting beyond Int64 would trap.
                let millis = (v * factor * 1000).rounded()
                guard millis < 9.0e18 else { throw error("the duration '\(s)' is longer than any setting allows") }
                return .milliseconds(Int64(millis))
            }
        }
        throw error("expected a duration such as 500ms, 15s, 15m or 1h, found '\(s)'")
    }

    /// A duration that may also be given in days (`90d`, at most 100 years), e.g. a retention.
    public func longDuration() throws(ConfigError) -> Duration {
        let s = try string().trimmingCharacters(in: .whitespaces)
        guard s.hasSuffix("d"), let days = Int(s.dropLast()), days >= 0 else { return try duration() }
        guard days <= 36_500 else { throw error("\(days) days is more than 100 years") }
        return .seconds(days * 86400)
    }

    /// A size such as 512MB, 2GB or a plain byte count.
    public func byteSize() throws(ConfigError) -> Int64 {
        let s = try string().trimmingCharacters(in: .whitespaces)
        let units: [(String, Int64)] = [("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)]
        for (suffix, factor) in units where s.hasSuffix(suffix) {
            if let v = Int64(s.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v > 0 {
                let (product, overflow) = v.multipliedReportingOverflow(by: factor)
                guard !overflow else { throw error("the size '\(s)' does not fit in 64 bits") }
                return product
            }
        }
        if let v = Int64(s), v > 0 { return v }
        throw error("expected a size such as 64MB or 2GB, found '\(s)'")
    }

    // MARK: Collections

    /// The node as a list of nodes, each with its index in the key path.
    public func list() throws(ConfigError) -> [ConfigNode] {
        guard case .sequence(let seq) = node else { throw error("expected a list, found \(kindName)") }
        return seq.enumerated().map { ConfigNode(node: $0.element, file: file, keyPath: "\(keyPath)[\($0.offset)]") }
    }

    /// The node as a mapping, read through a ``ConfigMapping`` that tracks which keys were used.
    public func mapping() throws(ConfigError) -> ConfigMapping {
        guard case .mapping(let map) = node else { throw error("expected a mapping of settings, found \(kindName)") }
        var entries: [(key: String, node: ConfigNode, keyNode: ConfigNode)] = []
        for (k, v) in map {
            let keyNode = ConfigNode(node: k, file: file, keyPath: keyPath)
            guard case .scalar(let ks) = k else { throw keyNode.error("expected a plain key, found \(keyNode.kindName)") }
            let path = keyPath.isEmpty ? ks.string : "\(keyPath).\(ks.string)"
            if entries.contains(where: { $0.key == ks.string }) {
                throw ConfigNode(node: k, file: file, keyPath: path).error("duplicate key")
            }
            entries.append((ks.string, ConfigNode(node: v, file: file, keyPath: path), ConfigNode(node: k, file: file, keyPath: path)))
        }
        return ConfigMapping(owner: self, entries: entries)
    }
}

/// The keys of one mapping. Reading marks a key used; ``finish()`` rejects keys nobody read.
public final class ConfigMapping {
    let owner: ConfigNode
    let entries: [(key: String, node: ConfigNode, keyNode: ConfigNode)]
    private var used: Set<String> = []

    init(owner: ConfigNode, entries: [(key: String, node: ConfigNode, keyNode: ConfigNode)]) {
        self.owner = owner
        self.entries = entries
    }

    /// The keys present, in file order.
    public var keys: [String] { entries.map(\.key) }

    /// The node under `key`, or nil when absent. Marks the key used.
    public func optional(_ key: String) -> ConfigNode? {
        used.insert(key)
        return entries.first { $0.key == key }?.node
    }

    /// The node under `key`; a missing key is an error naming what was expected.
    public func required(_ key: String, expected: String) throws(ConfigError) -> ConfigNode {
        guard let node = optional(key) else {
            let path = owner.keyPath.isEmpty ? key : "\(owner.keyPath).\(key)"
            throw ConfigError(file: owner.file, keyPath: path, line: owner.line, column: owner.column, message: "missing; expected \(expected)")
        }
        return node
    }

    /// Every entry, for mappings whose keys are names (e.g. `profiles:`). Marks all keys used.
    public func all() -> [(key: String, node: ConfigNode)] {
        for e in entries { used.insert(e.key) }
        return entries.map { ($0.key, $0.node) }
    }

    /// Rejects keys that were never read: a misspelt setting must not be silently ignored.
    public func finish() throws(ConfigError) {
        let known = entries.map(\.key).filter { used.contains($0) }
        for entry in entries where !used.contains(entry.key) {
            let hint = Self.closest(to: entry.key, in: Array(used)).map { " (did you mean '\($0)'?)" } ?? ""
            let allowed = known.isEmpty ? "" : ""
            throw entry.keyNode.error("unknown key\(hint)\(allowed); known keys here: \(used.sorted().joined(separator: ", "))")
        }
    }

    private static func closest(to word: String, in candidates: [String]) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var prev = Array(0...b.count)
            for i in 1...max(a.count, 1) where !a.isEmpty {
                var cur = [i] + Array(repeating: 0, count: b.count)
                for j in stride(from: 1, through: b.count, by: 1) {
                    cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                }
                prev = cur
            }
            return prev[b.count]
        }
        let w = Array(word)
        let best = candidates.map { ($0, distance(w, Array($0))) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= max(2, word.count / 3) else { return nil }
        return best.0
    }
}
