import FuzzTargets
import TestSupport
import Testing

/// A bounded, deterministic run of the fuzz targets on every test run: the seed corpus (real profiles,
/// configs and test vectors), every checked-in finding in fuzz/corpus, and mutations of them. Longer,
/// coverage-guided runs: `bash fuzz/run.sh`.
@Suite(.timeLimit(.minutes(5))) struct SeededFuzzTests {
    /// Inputs per target, 2-3 s each on one idle core in a debug build: a config input costs ~5 ms (YAML),
    /// a record archive ~1 ms (signatures), a register image ~0.3 ms.
    static let budget = ["modbus": 10_000, "config": 600, "verify": 4_000, "replay": 20_000]

    static func target(_ name: String) throws -> any FuzzTarget {
        try #require(FuzzTargets.named(name, repositoryRoot: repositoryRoot), "no fuzz target \(name)")
    }

    @Test(arguments: ["modbus", "config", "verify", "replay"])
    func seedsAndMutationsFindNothing(_ name: String) throws {
        let target = try Self.target(name)
        let seeds = target.seeds(repositoryRoot: repositoryRoot)
        #expect(seeds.count >= 3, "\(name): the seed corpus is missing (\(seeds.count) inputs)")
        var fuzzer = SeededFuzzer(seed: 0x4D45_5445_5247_4154, corpus: seeds + FuzzTargets.corpus(of: target, repositoryRoot: repositoryRoot))
        let findings = fuzzer.run(target, iterations: try #require(Self.budget[name]))
        #expect(findings.isEmpty, "\(name): \(findings.count) findings; first: \(findings.prefix(3).map(\.description).joined(separator: "\n"))")
    }

    /// Every input kept in fuzz/corpus (among them each crash found so far) runs clean on its own.
    @Test(arguments: ["modbus", "config", "verify", "replay"])
    func keptCorpusRunsClean(_ name: String) throws {
        let target = try Self.target(name)
        let corpus = FuzzTargets.corpus(of: target, repositoryRoot: repositoryRoot)
        // An empty folder would make this test pass while checking nothing.
        #expect(!corpus.isEmpty, "fuzz/corpus/\(name) is empty: keep at least the hostile inputs made by hand")
        for input in corpus {
            let problems = target.run(input)
            #expect(problems.isEmpty, "\(name): \(problems)")
        }
    }
}
