import ArgumentParser
import Foundation
import Signing

/// `metergate verify`: checks signatures and hash chains of signed records and reports per stream.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify signatures and hash chains of signed records (JWS or OCMF, one per line).",
        discussion: """
            Reports per stream (gateway, meter, epoch): verified records, gaps (missing seq ranges), duplicates, \
            forks (two different records with one seq), reordering, broken chain links, key changes without a \
            rotation marker, tampered records and records signed by an unknown key. Missing seqs that a verified \
            record states, signed, its gateway's store lost (store_lost) are reported as stated lost, not as \
            failing gaps. Exit 0 when everything verifies, 1 on any failure, 2 on usage errors.
            --trust FILE verifies each record only with keys trusted for its gateway (metergate trust add); --key KEY \
            files are trusted for every gateway. KEY may be a JWK, a JWK Set {"keys":[...]} (the retained keys topic), PEM public or private keys \
            (several blocks for rotated keys), or SPKI DER hex lines; --key may be repeated.
            """)

    @OptionGroup var trusted: TrustOptions

    @Flag(help: "Print the report as one JSON object.")
    var json = false

    @Flag(name: .customLong("from-start"), help: "The input starts at seq 1 of every epoch: a later first record is a gap.")
    var fromStart = false

    @Flag(name: .customLong("tolerate-redelivery"),
          help: "Report duplicates and reordering (normal in a log of MQTT deliveries and replays) without failing.")
    var tolerateRedelivery = false

    @Argument(help: ArgumentHelp("Records, one per line; - or nothing for standard input.", valueName: "FILE"))
    var input: String = "-"

    func run() throws {
        let (store, keys) = try trusted.load(command: "verify")
        let fd: Int32
        if input == "-" {
            fd = 0
        } else {
            fd = open(input, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw Failure.usage("cannot read \(input): \(String(cString: strerror(errno)))") }
        }
        defer { if fd != 0 { close(fd) } }

        let verifier = RecordVerifier(trust: store, keys: keys)
        var analyzer = ChainAnalyzer(inputStartsAtEpochStart: fromStart, toleratesRedelivery: tolerateRedelivery)
        var reader = LineReader(fd: fd)
        var lineNumber = 0
        while true {
            let batch: [ArraySlice<UInt8>]
            do { batch = try reader.nextLines(max: 8192) } catch { throw Failure.run("reading \(input): \(error)") }
            if batch.isEmpty { break }
            var numbered: [(Int, ArraySlice<UInt8>)] = []
            numbered.reserveCapacity(batch.count)
            for line in batch {
                lineNumber += 1
                if !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { numbered.append((lineNumber, line)) }
            }
            let results = verifier.verify(batch: numbered.map(\.1))
            for (i, result) in results.enumerated() { analyzer.add(result, line: numbered[i].0) }
        }
        let report = analyzer.report()
        print(json ? report.json : report.text, terminator: json ? "\n" : "")
        if !report.passed { throw ExitCode(1) }
    }
}

/// Reads a file descriptor in large chunks and splits it into lines (without the newline).
/// Runs on the command's own thread, never on Swift's cooperative pool. The corresponding C function is `read`.
struct LineReader {
    let fd: Int32
    var buffer: [UInt8] = []
    var atEnd = false

    struct ReadError: Error, CustomStringConvertible {
        var errno: Int32
        var description: String { String(cString: strerror(errno)) }
    }

    init(fd: Int32) { self.fd = fd }

    /// Up to `max` complete lines; a last line without a newline counts at the end. Empty at end of input.
    mutating func nextLines(max: Int) throws -> [ArraySlice<UInt8>] {
        while !atEnd && buffer.count(where: { $0 == 0x0A }) < max {
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(errno: errno)
            }
            if n == 0 { atEnd = true; break }
            buffer += chunk[0..<n]
        }
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        let all = buffer
        while lines.count < max, let nl = all[start...].firstIndex(of: 0x0A) {
            lines.append(all[start..<nl])
            start = nl + 1
        }
        if atEnd && lines.count < max && start < all.count {
            lines.append(all[start...])
            start = all.count
        }
        buffer = Array(all[start...])
        return lines
    }
}
