/// A problem in a config, board or profile file: the file, the key path, the line, and what was expected.
public struct ConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    /// Dotted key path with list indices, e.g. `meters[1].id`; empty for the whole document.
    public var keyPath: String
    /// 1-based line and column where the offending node starts; 0 when unknown.
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, keyPath: String, line: Int = 0, column: Int = 0, message: String) {
        self.file = file
        self.keyPath = keyPath
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var location = file
        if line > 0 { location += ":\(line):\(column)" }
        let key = keyPath.isEmpty ? "" : " \(keyPath):"
        return "\(location):\(key) \(message)"
    }
}

/// Several config errors at once, so an operator fixes a file in one pass.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public init(_ errors: [ConfigError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
