import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Keeps one S0 input's pulse count in a small file, so a restart loses no pulse already counted.
///
/// Every save writes a temporary file, `fsync`s it, renames it over the old one and `fsync`s the directory: after a
/// power cut the file holds either the old or the new count, never a torn one. A file that cannot be read is an
/// error, never a silent zero: the count is money. Blocking file I/O: the pulse reader thread calls it.
public struct PulseCountStore: Sendable {
    public struct Record: Sendable, Hashable, Codable {
        public var input: String
        public var impulsesPerKilowattHour: UInt64
        public var count: UInt64
    }

    public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "pulse count file \(path): \(reason)" }
    }

    public let path: String
    public let input: String
    public let impulsesPerKilowattHour: UInt64

    public init(path: String, input: String, impulsesPerKilowattHour: UInt64) {
        self.path = path
        self.input = input
        self.impulsesPerKilowattHour = impulsesPerKilowattHour
    }

    /// The saved count, or 0 when there is no file yet.
    /// - Throws: when the file is unreadable, corrupt, or was written for another input or pulse constant.
    public func load() throws(StoreError) -> UInt64 {
        guard FileManager.default.fileExists(atPath: path) else { return 0 }
        guard let data = FileManager.default.contents(atPath: path) else { throw StoreError(path: path, reason: "cannot be read") }
        let record: Record
        do { record = try JSONDecoder().decode(Record.self, from: data) } catch {
            throw StoreError(path: path, reason: "is not a pulse count record (\(error)); refusing to start from zero")
        }
        guard record.input == input else { throw StoreError(path: path, reason: "belongs to input '\(record.input)', not '\(input)'") }
        guard record.impulsesPerKilowattHour == impulsesPerKilowattHour else {
            throw StoreError(path: path, reason: "was counted at \(record.impulsesPerKilowattHour) imp/kWh, configured \(impulsesPerKilowattHour)")
        }
        return record.count
    }

    /// Saves `count` durably. The corresponding C functions are `open`, `write`, `fsync` and `rename`.
    public func save(_ count: UInt64) throws(StoreError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(Record(input: input, impulsesPerKilowattHour: impulsesPerKilowattHour, count: count)) else {
            throw StoreError(path: path, reason: "cannot encode the count")
        }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw StoreError(path: temporary, reason: "open failed: \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else {
            throw StoreError(path: temporary, reason: "write or fsync failed: \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            throw StoreError(path: path, reason: "rename failed: \(String(cString: strerror(errno)))")
        }
        let directory = open((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}
