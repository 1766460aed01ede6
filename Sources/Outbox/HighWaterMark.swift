import Crypto
import Foundation

/// The highest record of each stream that ever left the store for publishing, kept in a small file beside
/// the database (`<outbox>.mark`), outside SQLite and its WAL.
///
/// SQLite cannot notice a WAL that lost its tail (a cut file, a power cut under `synchronous=NORMAL`): the
/// missing commits simply never happened, and the stream heads roll back with them. Without this mark the
/// outbox would then sign new records under seqs it had already published: a fork at the settlement side.
/// With it, the outbox continues each stream from the mark instead (see ``SQLiteOutbox``).
///
/// The file is written whole and atomically (temporary file, `fsync`, `rename`, `fsync` of the directory)
/// before the records it covers are handed out. Its text is versioned and carries a SHA-256 over its body,
/// so a damaged file is found and reported, never read as a smaller mark.
struct HighWaterMark: Sendable, Hashable {
    /// One stream's highest published record.
    struct Entry: Sendable, Hashable, Codable {
        var seq: UInt64
        /// The record's hash: the `prev` of the stream's next record.
        var hash: [UInt8]
        /// The end of the interval the record covers (ms since the Unix epoch), when its appender said.
        var intervalEnd: Int64?
    }

    /// The store epoch the seqs belong to.
    var epoch: String
    var streams: [String: Entry]

    static let format = "metergate-outbox-mark"
    static let version = 1

    /// The file that goes with the database at `databasePath`.
    static func path(forDatabase databasePath: String) -> String { databasePath + ".mark" }

    private struct Body: Codable {
        var format: String
        var version: Int
        var epoch: String
        var streams: [Stream]
    }

    private struct Stream: Codable {
        var meter: String
        var seq: UInt64
        var hash: String
        var intervalEnd: Int64?
    }

    /// The file's text: one line of JSON, then `sha256 <hex of that line>`.
    func encoded() -> [UInt8] {
        let body = Body(format: Self.format, version: Self.version, epoch: epoch,
                        streams: streams.keys.sorted().map { meter in
                            let entry = streams[meter]!
                            return Stream(meter: meter, seq: entry.seq, hash: Data(entry.hash).base64EncodedString(), intervalEnd: entry.intervalEnd)
                        })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and integers cannot fail.
        let json = Array((try? encoder.encode(body)) ?? Data())
        return json + Array("\nsha256 \(Self.hex(Array(SHA256.hash(data: json))))\n".utf8)
    }

    /// Reads a mark file's text. Throws a description of what is wrong with it.
    static func decode(_ bytes: [UInt8]) throws(MarkProblem) -> HighWaterMark {
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard lines.count == 3, lines[2].isEmpty, lines[1].starts(with: Array("sha256 ".utf8)) else {
            throw MarkProblem("it is not a MeterGate outbox mark (expected a JSON line and a sha256 line, \(bytes.count) bytes found)")
        }
        let json = Array(lines[0])
        let checksum = String(decoding: lines[1].dropFirst(7), as: UTF8.self)
        guard checksum == hex(Array(SHA256.hash(data: json))) else { throw MarkProblem("its SHA-256 does not match its contents") }
        let body: Body
        do { body = try JSONDecoder().decode(Body.self, from: Data(json)) } catch {
            throw MarkProblem("its contents are not a mark: \(error)")
        }
        guard body.format == format else { throw MarkProblem("its format is '\(body.format)', not '\(format)'") }
        guard body.version == version else {
            throw MarkProblem("it has format version \(body.version); this MeterGate reads version \(version)")
        }
        var streams: [String: Entry] = [:]
        for stream in body.streams {
            guard let hash = Data(base64Encoded: stream.hash).map(Array.init), hash.count == 32 else {
                throw MarkProblem("stream \(stream.meter): the hash is not 32 bytes of base64")
            }
            streams[stream.meter] = Entry(seq: stream.seq, hash: hash, intervalEnd: stream.intervalEnd)
        }
        return HighWaterMark(epoch: body.epoch, streams: streams)
    }

    /// What is wrong with a mark file's contents.
    struct MarkProblem: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// Reads the mark at `path`; nil when there is no file.
    static func load(path: String) throws(OutboxError) -> HighWaterMark? {
        guard let data = FileManager.default.contents(atPath: path) else {
            if !FileManager.default.fileExists(atPath: path) { return nil }
            throw .markFileUnreadable(path: path, call: "open", code: EACCES)
        }
        do throws(MarkProblem) {
            return try decode(Array(data))
        } catch {
            throw .markFileDamaged(path: path, reason: error.reason)
        }
    }

    /// Writes the mark to `path` durably: `<path>.tmp` written and `fsync`ed, renamed over `path`, then the
    /// directory `fsync`ed, so that after a crash the file holds either the old mark or this one.
    func write(path: String) throws(OutboxError) {
        let temporary = path + ".tmp"
        let bytes = encoded()
        let fd = Foundation.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .markFileUnreadable(path: temporary, call: "open", code: errno) }
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                Foundation.close(fd)
                throw .markFileUnreadable(path: temporary, call: "write", code: code)
            }
            written += n
        }
        if fsync(fd) != 0 {
            let code = errno
            Foundation.close(fd)
            throw .markFileUnreadable(path: temporary, call: "fsync", code: code)
        }
        Foundation.close(fd)
        guard rename(temporary, path) == 0 else { throw .markFileUnreadable(path: path, call: "rename", code: errno) }
        let directory = (path as NSString).deletingLastPathComponent
        let dirfd = Foundation.open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw .markFileUnreadable(path: directory, call: "open", code: errno) }
        defer { Foundation.close(dirfd) }
        guard fsync(dirfd) == 0 else { throw .markFileUnreadable(path: directory, call: "fsync", code: errno) }
    }

    /// Lower-case hex, for the checksum line.
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
