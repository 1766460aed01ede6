import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a key file could not be used. Every case names the file and the fix.
public enum KeyFileError: Error, Hashable, Sendable, CustomStringConvertible {
    case unreadable(path: String, errno: Int32)
    case tooOpen(path: String, mode: UInt32)
    /// A directory, a device or a FIFO where the key file should be.
    case notAFile(path: String, kind: String)
    /// The key is of another algorithm than the config's `signing.algorithm`.
    case wrongAlgorithm(path: String, found: SigningAlgorithm, configured: SigningAlgorithm)
    case exists(path: String)
    case cannotWrite(path: String, errno: Int32)
    case notPEM
    /// A `-----BEGIN` line without its `-----END` line: a file cut short.
    case truncatedPEM
    case unsupportedKey(String)
    case inFile(path: String, underlying: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let e):
            return "cannot read key file \(path): \(String(cString: strerror(e))) (errno \(e))"
        case .tooOpen(let path, let mode):
            return "key file \(path) has mode \(String(mode, radix: 8)): group or others can read it; "
                + "refusing to use it. Fix: chmod 600 \(path) (and chown it to the service user)"
        case .notAFile(let path, let kind):
            return "key file \(path) is \(kind), not a key file"
        case .wrongAlgorithm(let path, let found, let configured):
            return "key file \(path) holds an \(found.rawValue) key, but signing.algorithm is \(configured.rawValue); "
                + "refusing to sign with a key the config does not name"
        case .exists(let path):
            return "key file \(path) already exists; refusing to overwrite a signing key (move it away first)"
        case .cannotWrite(let path, let e):
            return "cannot write key file \(path): \(String(cString: strerror(e))) (errno \(e))"
        case .notPEM: return "not a PEM file (expected -----BEGIN PRIVATE KEY-----)"
        case .truncatedPEM: return "truncated PEM: a -----BEGIN line without its -----END line"
        case .unsupportedKey(let why): return "unsupported key: \(why)"
        case .inFile(let path, let underlying): return "key file \(path): \(underlying)"
        }
    }
}

/// Reading and writing private key files with the permissions a revenue gateway needs.
public enum KeyFile {
    /// Loads a private key as ``load(_:)`` does, and refuses a key of another algorithm than `algorithm`.
    public static func load(_ path: String, algorithm: SigningAlgorithm) throws(KeyFileError) -> SigningKey {
        let key = try load(path)
        guard key.algorithm == algorithm else { throw .wrongAlgorithm(path: path, found: key.algorithm, configured: algorithm) }
        return key
    }

    /// Loads a private key, refusing a file that group or others may read, and anything but a regular file.
    /// The corresponding C functions are `open`, `fstat` and `read`.
    public static func load(_ path: String) throws(KeyFileError) -> SigningKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .unreadable(path: path, errno: errno) }
        switch UInt32(info.st_mode) & UInt32(S_IFMT) {
        case UInt32(S_IFREG): break
        case UInt32(S_IFDIR): throw .notAFile(path: path, kind: "a directory")
        default: throw .notAFile(path: path, kind: "a device, FIFO or socket")
        }
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
        if bytes.isEmpty { throw .inFile(path: path, underlying: "the file is empty") }
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
