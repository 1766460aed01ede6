import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A rail that could not be read: the call, errno, the file, and what an operator can do about it.
public struct RailError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: Hashable, Sendable {
        /// A system call failed with this errno.
        case system(call: String, errno: Int32)
        /// The file held something other than one integer.
        case notAnInteger(String)
        /// A voltage or current that multiplies to nonsense (negative power on a supply rail, overflow).
        case outOfRange(String)
    }

    public let path: String
    public let reason: Reason

    public init(path: String, reason: Reason) {
        self.path = path
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .system(let call, let code):
            var hint = ""
            if code == EACCES || code == EPERM {
                hint = path.contains("powercap")
                    ? "; RAPL energy_uj is root-only since Linux 5.10 (CVE-2020-8694): run as root or add a udev rule that gives the service group read access"
                    : "; permission denied for the service user"
            }
            if code == ENOENT { hint = "; the rail is gone (driver unloaded or device removed?)" }
            if code == ENODATA { hint = "; the channel is disabled" }
            return "\(call) failed for \(path): \(String(cString: strerror(code))) [errno \(code)]\(hint)"
        case .notAnInteger(let text):
            return "\(path) holds '\(text)', not an integer"
        case .outOfRange(let why):
            return "\(path): \(why)"
        }
    }
}

extension SysfsTree {
    /// Reads one integer attribute, with the errno when that fails (sysfs reports a disabled channel, a
    /// missing device or a root-only file only through errno). Blocking file I/O: call it from a dedicated
    /// queue, as `RailSampler` does. The corresponding C functions are `open` and `read`.
    public func readInteger(_ relative: String) throws(RailError) -> Int64 {
        let full = path(relative)
        let fd = open(full, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RailError(path: full, reason: .system(call: "open", errno: errno)) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        var count = 0
        repeat { count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } } while count < 0 && errno == EINTR
        guard count >= 0 else { throw RailError(path: full, reason: .system(call: "read", errno: errno)) }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let value = Int64(text) else { throw RailError(path: full, reason: .notAnInteger(text)) }
        return value
    }

    /// The last path component a symbolic link points to (`device` → "1-0040"), or nil if it is no link.
    /// The corresponding C function is `readlink`.
    public func linkTarget(_ relative: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path(relative), &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return target.split(separator: "/").last.map(String.init)
    }
}
