import Crypto
import Foundation
import Logging
import MeterCore

/// The highest record of each stream that ever left the store for publishing, kept beside the database
/// (`<outbox>.mark-a` and `<outbox>.mark-b`), outside SQLite and its WAL.
///
/// SQLite cannot notice a WAL that lost its tail (a cut file, a power cut under `synchronous=NORMAL`): the
/// missing commits simply never happened, and the stream heads roll back with them. Without this mark the
/// outbox would then sign new records under seqs it had already published: a fork at the settlement side.
/// With it, the outbox continues each stream from the mark instead (see ``SQLiteOutbox``).
///
/// Durability at one `fdatasync` per update: the mark alternates between two slot files, each rewritten in
/// place, numbered by a generation. An update overwrites the slot of the older generation and is `fdatasync`ed
/// before the records it covers are handed out, so the newest durable mark is never overwritten: after a
/// crash in the middle of an update, the torn slot fails its check and the other holds the mark that was in
/// force (the records of the torn update never left). A temporary file, `rename` and a directory `fsync`
/// would cost two journal commits per update; the publisher claims records many times a second while a
/// backlog drains. Each slot's text is versioned and carries a SHA-256 over its body, so damage is found
/// and reported, never read as a smaller mark.
struct HighWaterMark: Sendable, Hashable {
    /// One stream's highest published record.
    struct Entry: Sendable, Hashable {
        var seq: UInt64
        /// The record's hash: the `prev` of the stream's next record.
        var hash: [UInt8]
        /// The end of the interval the record covers (ms since the Unix epoch), when its appender said.
        var intervalEnd: Int64?
    }

    /// The store epoch the seqs belong to.
    var epoch: String
    var streams: [String: Entry]
    /// Rises by one with every update; the update goes to slot `generation % 2`.
    var generation: UInt64 = 0

    static let format = "metergate-outbox-mark"
    static let version = 1

    /// The two slot files that go with the database at `databasePath`.
    static func paths(forDatabase databasePath: String) -> [String] { [databasePath + ".mark-a", databasePath + ".mark-b"] }

    private struct Body: Codable {
        var format: String
        var version: Int
        var generation: UInt64
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
    ///
    /// Written directly as bytes, the same text `JSONEncoder` with sorted keys and unescaped slashes makes of
    /// ``Body`` (``encodedWithJSONEncoder()``; `decode` reads either): the publisher writes the mark with every
    /// claim, each time with every stream, and Codable's generic encoding cost more than the rest of a claim.
    /// The outbox keeps the text of each stream ready in a ``Text`` and writes the same bytes.
    func encoded() -> [UInt8] {
        var text = Text()
        text.update(streams)
        return text.encoded(epoch: epoch, generation: generation)
    }

    /// The mark's text with each stream's JSON member kept ready: a claim raises a few streams of many, and only
    /// their members are written again (with every stream's member written at every claim, base64 and escaping
    /// cost more than the rest of the mark's write).
    struct Text: Sendable {
        /// The streams' members, in the order `JSONEncoder` sorts them (by meter).
        private var members: [(meter: String, json: [UInt8])] = []
        private var index: [String: Int] = [:]
        private var memberBytes = 0

        /// Makes the members of `streams` again (adding streams not seen before).
        mutating func update(_ streams: [String: Entry]) {
            var added = false
            for (meter, entry) in streams {
                let json = Self.member(meter: meter, entry: entry)
                if let i = index[meter] {
                    memberBytes += json.count - members[i].json.count
                    members[i].json = json
                } else {
                    memberBytes += json.count
                    members.append((meter, json))
                    added = true
                }
            }
            guard added else { return }
            members.sort { $0.meter < $1.meter }
            index = Dictionary(uniqueKeysWithValues: members.enumerated().map { ($1.meter, $0) })
        }

        /// The file's text for `epoch` and `generation` with the members as they are now.
        func encoded(epoch: String, generation: UInt64) -> [UInt8] {
            var json = [UInt8]()
            json.reserveCapacity(96 + epoch.utf8.count + memberBytes + members.count)
            // Members in sorted order: Body's epoch, format, generation, streams, version.
            json.append(static: "{\"epoch\":")
            json.append(jsonString: epoch)
            json.append(static: ",\"format\":")
            json.append(jsonString: HighWaterMark.format)
            json.append(static: ",\"generation\":")
            json.appendDecimal(generation)
            json.append(static: ",\"streams\":[")
            for (i, member) in members.enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                json.append(contentsOf: member.json)
            }
            json.append(static: "],\"version\":")
            json.appendDecimal(HighWaterMark.version)
            json.append(UInt8(ascii: "}"))
            var text = json
            text.append(static: "\nsha256 ")
            for byte in SHA256.hash(data: json) {
                text.append(HighWaterMark.hexDigits[Int(byte >> 4)])
                text.append(HighWaterMark.hexDigits[Int(byte & 0xF)])
            }
            text.append(UInt8(ascii: "\n"))
            return text
        }

        /// One stream's member of the `streams` array: Stream's hash, intervalEnd (left out when nil), meter, seq.
        static func member(meter: String, entry: Entry) -> [UInt8] {
            var json = [UInt8]()
            json.reserveCapacity(100 + meter.utf8.count)
            json.append(static: "{\"hash\":")
            json.append(base64: entry.hash)
            if let end = entry.intervalEnd {
                json.append(static: ",\"intervalEnd\":")
                json.appendDecimal(end)
            }
            json.append(static: ",\"meter\":")
            json.append(jsonString: meter)
            json.append(static: ",\"seq\":")
            json.appendDecimal(entry.seq)
            json.append(UInt8(ascii: "}"))
            return json
        }
    }

    /// The JSON line as `JSONEncoder` writes ``Body`` (sorted keys, unescaped slashes): what ``encoded()``
    /// must equal, for tests.
    func encodedWithJSONEncoder() -> [UInt8] {
        let body = Body(format: Self.format, version: Self.version, generation: generation, epoch: epoch,
                        streams: streams.keys.sorted().map { meter in
                            let entry = streams[meter]!
                            return Stream(meter: meter, seq: entry.seq, hash: Data(entry.hash).base64EncodedString(), intervalEnd: entry.intervalEnd)
                        })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and integers cannot fail.
        return Array((try? encoder.encode(body)) ?? Data())
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
        return HighWaterMark(epoch: body.epoch, streams: streams, generation: body.generation)
    }

    /// What is wrong with a mark file's contents.
    struct MarkProblem: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// Reads the newest valid slot of the database at `databasePath`; nil when neither slot exists. One
    /// damaged slot beside a valid one is an update torn by a crash (its records never left): the valid one
    /// is the mark. Both damaged throws ``OutboxError/markFileDamaged(path:reason:)``.
    static func load(databasePath: String, logger: Logger) throws(OutboxError) -> HighWaterMark? {
        var found: [HighWaterMark] = []
        var problems: [String] = []
        for path in paths(forDatabase: databasePath) {
            guard let data = FileManager.default.contents(atPath: path) else {
                if !FileManager.default.fileExists(atPath: path) { continue }
                throw .markFileUnreadable(path: path, call: "open", code: EACCES)
            }
            if data.isEmpty {
                // A slot's first write that failed before the atomic creation existed (a full disk): it never held a mark.
                logger.warning("an empty outbox high-water mark slot is ignored (its first write failed)", metadata: ["path": "\(path)"])
                continue
            }
            do throws(MarkProblem) {
                found.append(try decode(Array(data)))
            } catch {
                problems.append("\(path): \(error.reason)")
            }
        }
        guard let newest = found.max(by: { $0.generation < $1.generation }) else {
            if problems.isEmpty { return nil }
            throw .markFileDamaged(path: paths(forDatabase: databasePath).joined(separator: ", "), reason: problems.joined(separator: "; "))
        }
        if !problems.isEmpty {
            logger.warning("one outbox high-water mark slot is damaged (an update cut short by a crash); using the other",
                           metadata: ["problem": "\(problems.joined(separator: "; "))", "generation": "\(newest.generation)"])
        }
        return newest
    }

    /// Writes the mark into slot `generation % 2` of the database at `databasePath`, in place, and
    /// `fdatasync`s it. A slot that does not exist yet is made whole or not at all: written to a temporary file,
    /// `fdatasync`ed, renamed into place and the directory `fsync`ed, so a full disk can never leave an empty slot
    /// that would stop every later start. `text`: the mark's ``encoded()`` text, if the caller has it ready.
    func write(databasePath: String, text: [UInt8]? = nil) throws(OutboxError) {
        let path = Self.paths(forDatabase: databasePath)[Int(generation % 2)]
        let bytes = text ?? encoded()
        let fd = Foundation.open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 && errno == ENOENT { return try create(path: path, bytes: bytes) }
        guard fd >= 0 else { throw .markFileUnreadable(path: path, call: "open", code: errno) }
        defer { Foundation.close(fd) }
        try Self.writeAll(fd: fd, path: path, bytes: bytes)
    }

    /// A new slot: temporary file, `fdatasync`, `rename`, directory `fsync`; the temporary file is removed on failure.
    private func create(path: String, bytes: [UInt8]) throws(OutboxError) {
        let temporary = path + ".new"
        let fd = Foundation.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .markFileUnreadable(path: temporary, call: "open", code: errno) }
        do throws(OutboxError) {
            try Self.writeAll(fd: fd, path: temporary, bytes: bytes)
            Foundation.close(fd)
        } catch {
            Foundation.close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw .markFileUnreadable(path: path, call: "rename", code: code)
        }
        let directory = (path as NSString).deletingLastPathComponent
        let dirfd = Foundation.open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw .markFileUnreadable(path: directory, call: "open", code: errno) }
        defer { Foundation.close(dirfd) }
        guard fsync(dirfd) == 0 else { throw .markFileUnreadable(path: directory, call: "fsync", code: errno) }
    }

    /// `pwrite` of all of `bytes` from offset 0, `ftruncate` to their length, `fdatasync`.
    private static func writeAll(fd: Int32, path: String, bytes: [UInt8]) throws(OutboxError) {
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(written)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .markFileUnreadable(path: path, call: "pwrite", code: errno)
            }
            written += n
        }
        guard ftruncate(fd, off_t(bytes.count)) == 0 else { throw .markFileUnreadable(path: path, call: "ftruncate", code: errno) }
        guard fdatasync(fd) == 0 else { throw .markFileUnreadable(path: path, call: "fdatasync", code: errno) }
    }

    /// Lower-case hex, for the checksum line.
    static func hex(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static let hexDigits = Array("0123456789abcdef".utf8)
    static let base64Digits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
}

extension [UInt8] {
    mutating func append(static text: StaticString) {
        text.withUTF8Buffer { append(contentsOf: $0) }
    }

    /// `string` as a JSON string, escaped as `JSONEncoder` escapes it (slashes unescaped).
    mutating func append(jsonString string: String) {
        append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): append(UInt8(ascii: "\\")); append(byte)
            case 0x08: append(static: "\\b")
            case 0x0C: append(static: "\\f")
            case 0x0A: append(static: "\\n")
            case 0x0D: append(static: "\\r")
            case 0x09: append(static: "\\t")
            case 0..<0x20:
                append(static: "\\u00")
                append(HighWaterMark.hexDigits[Int(byte >> 4)])
                append(HighWaterMark.hexDigits[Int(byte & 0xF)])
            default: append(byte)
            }
        }
        append(UInt8(ascii: "\""))
    }

    /// Standard base64 with padding in quotes, as `Data.base64EncodedString()` writes it (no character needs escaping).
    mutating func append(base64 bytes: [UInt8]) {
        let digits = HighWaterMark.base64Digits
        append(UInt8(ascii: "\""))
        var i = 0
        while i < bytes.count {
            let n = Int(bytes[i]) << 16 | (i + 1 < bytes.count ? Int(bytes[i + 1]) << 8 : 0) | (i + 2 < bytes.count ? Int(bytes[i + 2]) : 0)
            append(digits[n >> 18 & 63])
            append(digits[n >> 12 & 63])
            append(i + 1 < bytes.count ? digits[n >> 6 & 63] : UInt8(ascii: "="))
            append(i + 2 < bytes.count ? digits[n & 63] : UInt8(ascii: "="))
            i += 3
        }
        append(UInt8(ascii: "\""))
    }
}
