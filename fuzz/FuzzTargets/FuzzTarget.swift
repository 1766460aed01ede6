import Foundation

/// An entry point that takes arbitrary bytes, as the wire, a config file or a record archive would hand them
/// to MeterGate. It must never trap: malformed input ends in an error value, never in a crash. Where the code
/// under test promises more (decoded values are finite, a parsed value writes back to the same value), a
/// broken promise is returned as a finding.
public protocol FuzzTarget: Sendable {
    /// The name used by `fuzz/run.sh`, the corpus folder and `METERGATE_FUZZ_TARGET`.
    var name: String { get }
    /// Feeds one input through the entry points; returns what went wrong (empty: nothing).
    func run(_ input: [UInt8]) -> [String]
    /// Real inputs to start from (profiles, configs, test vectors), read from the repository at `root`.
    func seeds(repositoryRoot root: String) -> [[UInt8]]
}

/// Every target, by name.
public enum FuzzTargets {
    /// Builds the targets with the repository's profiles, boards and test keys at `root`.
    public static func all(repositoryRoot root: String) -> [any FuzzTarget] {
        [ModbusDecoderTarget(repositoryRoot: root), ConfigTarget(repositoryRoot: root), RecordTarget(repositoryRoot: root), ReplayCommandTarget()]
    }

    /// The target called `name`, if any.
    public static func named(_ name: String, repositoryRoot root: String) -> (any FuzzTarget)? {
        all(repositoryRoot: root).first { $0.name == name }
    }

    /// The checked-in corpus of `target` (earlier findings and hand-made inputs), `fuzz/corpus/NAME/`.
    public static func corpus(of target: any FuzzTarget, repositoryRoot root: String) -> [[UInt8]] {
        files(in: "\(root)/fuzz/corpus/\(target.name)")
    }

    /// The contents of the regular files in `directory` (not recursive), sorted by name.
    static func files(in directory: String, suffix: String = "") -> [[UInt8]] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(suffix) }.sorted()
        return names.compactMap { FileManager.default.contents(atPath: "\(directory)/\($0)").map { [UInt8]($0) } }
    }
}

/// Reads `input` as a little stream of choices, so one byte string drives both structure and data.
struct ByteCursor {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { index >= bytes.count }

    /// The next byte, or 0 past the end.
    mutating func byte() -> UInt8 {
        defer { index += 1 }
        return index < bytes.count ? bytes[index] : 0
    }

    /// The next two bytes as a big-endian word, as registers travel on the wire.
    mutating func word() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    /// The rest of the input as words (an odd last byte is padded with 0).
    mutating func words() -> [UInt16] {
        var out: [UInt16] = []
        while !isAtEnd { out.append(word()) }
        return out
    }
}
