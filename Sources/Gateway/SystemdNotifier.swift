import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a notification could not be sent to systemd.
public struct SystemdNotifyError: Error, Hashable, Sendable, CustomStringConvertible {
    public let function: String
    public let code: Int32
    public let socketPath: String
    public var description: String {
        "\(function) on NOTIFY_SOCKET \(socketPath) failed: \(String(cString: strerror(code))) (errno \(code))"
    }
}

/// The sd_notify protocol without libsystemd: one datagram per state string to the `AF_UNIX` socket named
/// by `$NOTIFY_SOCKET` (a leading `@` names an abstract socket).
public struct SystemdNotifier: Sendable {
    /// The socket path, or nil when not started by systemd with `Type=notify`.
    public let socketPath: String?
    /// The watchdog interval from `$WATCHDOG_USEC` (when `$WATCHDOG_PID` is unset or names this process).
    public let watchdogInterval: Duration?

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` once, at start-up.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        socketPath = path
        if let usec = environment["WATCHDOG_USEC"].flatMap({ Int64($0) }), usec > 0,
           environment["WATCHDOG_PID"].map({ Int32($0) == getpid() }) ?? true {
            watchdogInterval = .microseconds(usec)
        } else {
            watchdogInterval = nil
        }
    }

    public var isEnabled: Bool { socketPath != nil }

    /// Sends `state` (e.g. "READY=1\nSTATUS=polling 3 meters"). Does nothing when not under systemd.
    /// The corresponding C functions are `socket(AF_UNIX, SOCK_DGRAM)` and `sendto`.
    public func notify(_ state: String) throws(SystemdNotifyError) {
        guard var path = socketPath else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemdNotifyError(function: "socket", code: errno, socketPath: path) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let abstract = path.hasPrefix("@")
        if abstract { path.removeFirst() }
        var bytes = Array(path.utf8)
        if abstract { bytes.insert(0, at: 0) }
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw SystemdNotifyError(function: "sendto", code: ENAMETOOLONG, socketPath: socketPath ?? "")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let sent = state.utf8CString.withUnsafeBufferPointer { message in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, message.baseAddress, message.count - 1, Int32(MSG_NOSIGNAL), $0, length)
                }
            }
        }
        guard sent >= 0 else { throw SystemdNotifyError(function: "sendto", code: errno, socketPath: socketPath ?? "") }
    }
}
