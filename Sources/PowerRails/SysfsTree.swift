import Foundation

/// A read-only view of sysfs under a root path, so every rail reader can run on a recorded tree in tests.
public struct SysfsTree: Sendable, Hashable {
    /// The directory that stands for `/` (on a real system, "/").
    public let root: String

    public init(root: String = "/") { self.root = root }

    /// The absolute path of `relative` (e.g. "sys/class/hwmon") under the root.
    public func path(_ relative: String) -> String {
        let r = root.hasSuffix("/") ? String(root.dropLast()) : root
        let rel = relative.hasPrefix("/") ? String(relative.dropFirst()) : relative
        return "\(r)/\(rel)"
    }

    /// The entries of a directory, sorted; empty when it does not exist.
    public func list(_ relative: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path(relative))) ?? []).sorted()
    }

    /// A file's contents with surrounding whitespace trimmed, or nil when missing or unreadable.
    public func text(_ relative: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path(relative)) else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A file holding one integer, as sysfs attributes do.
    public func integer(_ relative: String) -> Int64? {
        text(relative).flatMap { Int64($0) }
    }
}
