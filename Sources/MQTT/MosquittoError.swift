internal import CMosquitto
#if canImport(Glibc)
import Glibc
#endif

/// A failed libmosquitto call: the C function, its `MOSQ_ERR_*` code and, for `MOSQ_ERR_ERRNO`, errno.
public struct MosquittoError: Error, Hashable, Sendable, CustomStringConvertible {
    public let function: String
    /// The `MOSQ_ERR_*` result.
    public let code: Int32
    /// errno, when `code` is `MOSQ_ERR_ERRNO`; otherwise 0.
    public let systemErrno: Int32
    public let context: String

    public init(function: String, code: Int32, systemErrno: Int32 = 0, context: String = "") {
        self.function = function
        self.code = code
        self.systemErrno = systemErrno
        self.context = context
    }

    /// Builds the error for `rc`, capturing errno when libmosquitto says to look there.
    static func from(_ rc: Int32, function: String, context: String = "") -> MosquittoError {
        let e = rc == Int32(MOSQ_ERR_ERRNO.rawValue) ? CMosquitto_errno() : 0
        return MosquittoError(function: function, code: rc, systemErrno: e, context: context)
    }

    public var message: String {
        if code == Int32(MOSQ_ERR_ERRNO.rawValue), systemErrno != 0 { return String(cString: strerror(systemErrno)) }
        return String(cString: mosquitto_strerror(code))
    }

    public var description: String {
        let suffix = context.isEmpty ? "" : " (\(context))"
        return "\(function) failed: \(message) [MOSQ_ERR \(code)\(systemErrno != 0 ? ", errno \(systemErrno)" : "")]\(suffix)"
    }
}

/// libmosquitto's process-wide set-up. `mosquitto_lib_init` must run once before any client thread starts.
public enum MosquittoLibrary {
    private static let initialized: Bool = {
        mosquitto_lib_init()
        return true
    }()

    /// Initialises the library once per process. The corresponding C function is `mosquitto_lib_init`.
    public static func initialize() { _ = initialized }

    /// The library version as "major.minor.revision". The corresponding C function is `mosquitto_lib_version`.
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        mosquitto_lib_version(&major, &minor, &revision)
        return "\(major).\(minor).\(revision)"
    }
}
