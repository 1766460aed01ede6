import TestSupport

/// A deterministic mutation fuzzer: the same seed gives the same inputs on every machine, so a run in the
/// test suite is repeatable and a finding can be reproduced from its seed and iteration alone. Used where
/// libFuzzer is not (the test suite, a toolchain without `-sanitize=fuzzer`); libFuzzer's coverage-guided
/// search (`fuzz/run.sh`) goes much further.
public struct SeededFuzzer: Sendable {
    private var generator: SplitMix64
    public let corpus: [[UInt8]]

    /// Tokens that mean something to the parsers under test, spliced in whole (YAML, JSON, JWS/OCMF, Modbus).
    static let tokens: [[UInt8]] = [
        ": ", "\n", "\n  - ", "- ", "{ ", " }", "[", "]", ", ", "&a ", "*a", "!!binary ", "\"", "'", "#", "|\n", "? ",
        "{}", "[]", "null", "true", "-0", "1e999", "-9223372036854775808", "18446744073709551616", "0x7fffffff",
        "\\u0000", "\\ud800", ".", "OCMF|", "|", "==", "ms", "h", "s", "65535", "-1", "float64", "u64",
    ].map { Array($0.utf8) } + [[0x53, 0x75, 0x6E, 0x53], [0xFF, 0xFF], [0x80, 0x00], [0x7F, 0xC0, 0x00, 0x00], [0x00]]

    public init(seed: UInt64, corpus: [[UInt8]]) {
        self.generator = SplitMix64(seed: seed)
        self.corpus = corpus.isEmpty ? [[]] : corpus
    }

    mutating func next() -> UInt64 { generator.next() }

    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }

    /// The next input: a corpus entry with one to four mutations, or now and then random bytes.
    public mutating func nextInput() -> [UInt8] {
        if below(50) == 0 { return (0..<below(300)).map { _ in UInt8(truncatingIfNeeded: next()) } }
        var bytes = corpus[below(corpus.count)]
        for _ in 0...below(4) { mutate(&bytes) }
        return bytes
    }

    mutating func mutate(_ b: inout [UInt8]) {
        let n = b.count
        switch below(10) {
        case 0 where n > 0: b[below(n)] ^= UInt8(1 << below(8))                                   // bit flip
        case 1 where n > 0: b[below(n)] = [0, 0xFF, 0x7F, 0x80, 0x20, 0x0A][below(6)]            // interesting byte
        case 2 where n > 0: b[below(n)] = UInt8(truncatingIfNeeded: next())                       // random byte
        case 3 where n > 0: b.removeSubrange(below(n)...)                                         // truncate
        case 4 where n > 0:                                                                        // delete a range
            let at = below(n)
            b.removeSubrange(at..<min(n, at + 1 + below(16)))
        case 5:                                                                                    // insert random bytes
            b.insert(contentsOf: (0..<1 + below(16)).map { _ in UInt8(truncatingIfNeeded: next()) }, at: below(n + 1))
        case 6 where n > 0:                                                                        // duplicate a range
            let at = below(n), len = 1 + below(min(64, n - at))
            b.insert(contentsOf: b[at..<(at + len)], at: below(n + 1))
        case 7:                                                                                    // splice another entry
            let other = corpus[below(corpus.count)]
            let cut = below(n + 1), from = below(other.count + 1)
            b = Array(b[..<cut]) + Array(other[from...])
        default:                                                                                   // insert a token
            b.insert(contentsOf: Self.tokens[below(Self.tokens.count)], at: below(n + 1))
        }
    }

    /// What one run found: the input and what the target reported.
    public struct Finding: Sendable, CustomStringConvertible {
        public var iteration: Int
        public var input: [UInt8]
        public var problems: [String]
        public var description: String {
            "input \(iteration) (\(input.count) bytes, hex \(input.prefix(256).map { String($0, radix: 16) }.joined(separator: " "))): \(problems.joined(separator: "; "))"
        }
    }

    /// Feeds inputs `first..<first + iterations` to `target` (the corpus itself comes first); returns the
    /// findings. `current` is told each input before it runs (the command-line driver keeps it for its crash handler).
    public mutating func run(_ target: any FuzzTarget, iterations: Int, from first: Int = 0,
                             current: ([UInt8]) -> Void = { _ in }) -> [Finding] {
        var findings: [Finding] = []
        for i in first..<(first + iterations) {
            let input = i < corpus.count ? corpus[i] : nextInput()
            current(input)
            let problems = target.run(input)
            if !problems.isEmpty { findings.append(Finding(iteration: i, input: input, problems: problems)) }
        }
        return findings
    }
}
