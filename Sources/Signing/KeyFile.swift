import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a key file could not be used. Every case names the file and the fix.
public enum KeyFileError: Error, Hashable, Sendable, CustomStringConvertible {
    case unreadable(path: String, errno: Int32)
    case tooOpen(path: String, mode: UInt32)
    case exists(path: String)
    case cannotWrite(path: String, errno: Int32)
    case notPEM
    case unsupportedKey(String)
    case inFile(path: String, underlying: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let e):
            return "cannot read key file \(path): \(String(cString: strerror(e))) (errno \(e))"
        case .tooOpen(let path, let mode):
            return "key file \(path) has mode \(String(mode, radix: 8)): group or others can read it; "
                + "refusing to use it. Fix: chmod 600 \(path) (and chown it to the service user)"
        case .exists(let path):
            return "key file \(path) already exists; refusing to overwrite a signing key (move it away first)"
        case .cannotWrite(let path, let e):
            return "cannot write key file \(path): \(String(cString: strerror(e))) (errno \(e))"
        case .notPEM: return "not a PEM file (expected -----BEGIN PRIVATE KEY-----)"
        case .unsupportedKey(let why): return "unsupported key: \(why)"
        case .inFile(let path, let underlying): return "key file \(path): \(underlying)"
        }
    }
}

/// Reading and writing private key files with the permissions a revenue gateway needs.
public enum KeyFile {
    /// Loads a private key, refusing a file that group or others may read.
    /// The corresponding C functions are `open`, `fstat` and `read`.
    public static func load(_ path: String) throws(KeyFileError) -> SigningKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, errno: errno) }
        let mode = UInt32(info.st_mode) & 0o777
        guard mode & 0o077 == 0 else { throw .tooOpen(path: path, mode: mode) }
        var bytes = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw .unreadable(path: path, errno: errno) }
            if n == 0 { break }
            bytes += buffer[0..<n]
            if bytes.count > 65536 { throw .inFile(path: path, underlying: "larger than 64 KiB; not a key file") }
        }
        do {
            return try SigningKey(pem: String(decoding: bytes, as: UTF8.self))
        } catch {
            throw .inFile(path: path, underlying: error.description)
        }
    }

    /// Writes `key` to a new file with mode 0600, never overwriting an existing one.
    /// The corresponding C functions are `open(O_CREAT|O_EXCL, 0600)`, `write` and `fsync`.
    public static func write(_ key: SigningKey, to path: String) throws(KeyFileError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let e = errno
            throw e == EEXIST ? .exists(path: path) : .cannotWrite(path: path, errno: e)
        }
        defer { close(fd) }
        // The umask can only remove bits; set 0600 explicitly all the same.
        fchmod(fd, 0o600)
        let bytes = Array(key.pemRepresentation.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw .cannotWrite(path: path, errno: errno) }
            offset += n
        }
        guard fsync(fd) == 0 else { throw .cannotWrite(path: path, errno: errno) }
    }
}
