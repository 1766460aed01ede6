import Foundation
import TestSupport
import Testing

/// The bounded CI subset of the fault suite (`bash faults/run.sh --ci`): the real gateway killed with SIGKILL,
/// its broker killed and held down, meters failing on a shared RTU bus, its database damaged on disk, and a
/// corpus of malformed config files. The suite accounts for every interval that must exist by its own clock
/// (expected, received, verified and chain breaks by docs/test-vectors/peer_verify.py, lost, duplicated) and
/// exits non-zero on any failure that is not a recorded finding. Also: a
/// slow and a replaced meter, the outbox quota (dropping, signed, or keeping) and a really full disk, unusable signing keys, and a TLS broker
/// the gateway is given the wrong CA for.
@Suite(.serialized, .timeLimit(.minutes(20))) struct FaultSuiteTests {
    /// The CI subset in two parts of about equal length (the kills, the broker, the clock and the quota; then meters,
    /// counters, damaged storage, config and keys), so scripts/test.sh can run them side by side as two processes.
    static let parts: [[String]] = [
        ["sigkill", "broker", "clock", "storage-quota", "storage-quota-keep"],
        ["meters", "counter-reset", "counter-rollover", "counter-rated", "corrupt-frames", "storage-structure", "storage-content",
         "storage-wal", "config-corpus", "meter-slow", "meter-replaced", "bad-keys", "tls-wrong-ca"],
    ]
    /// Every scenario of the CI subset (faults/faultsuite.py, `--ci`).
    static let scenarios = parts.flatMap { $0 } + ["storage-full"]
    /// Scenarios that sign no reading to judge: their reading columns say "n/a" and their own checks decide.
    static let withoutReadings: Set = ["config-corpus", "bad-keys"]

    /// Whether this machine lets the suite mount the small tmpfs storage-full fills (root, and a kernel or container
    /// that allows `mount`): probed once, so a skip says why instead of hiding inside the suite's table.
    static let canMountTmpfs: Bool = {
        guard getuid() == 0, let mount = which("mount"), let umount = which("umount") else { return false }
        let dir = TemporaryDirectory("metergate-tmpfs-probe")
        defer { dir.cleanup() }
        guard (try? runProcess(mount, ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.path]))?.status == 0 else { return false }
        _ = try? runProcess(umount, [dir.path])
        return true
    }()

    @Test func theCISubsetLosesNothingAndBreaksNoChainPart1() throws {
        try run(Self.parts[0])
    }

    @Test func theCISubsetLosesNothingAndBreaksNoChainPart2() throws {
        try run(Self.parts[1])
    }

    /// The parts and storage-full together are the suite's CI subset, each scenario once: splitting drops none.
    @Test func thePartsAreTheWholeCISubset() throws {
        let r = try runProcess("/usr/bin/python3", ["faults/faultsuite.py", "--list"], currentDirectory: repositoryRoot)
        #expect(r.status == 0, "\(r.stderr)")
        let listed = r.stdout.split(separator: "\n").map(String.init)
        #expect(listed.count > 10, "\(r.stdout)")
        #expect(Self.scenarios.sorted() == listed.sorted(), "faultsuite.py --list: \(listed)")
        #expect(Set(Self.scenarios).count == Self.scenarios.count)
    }

    @Test(.enabled(if: canMountTmpfs, "storage-full fills a 3 MB tmpfs mounted as the data directory: needs root and a machine that allows mount"))
    func aReallyFullDiskLosesNothing() throws {
        try run(["storage-full"])
    }

    /// Runs `scenarios` of the CI subset, prints the suite's table (with its seed) into the test log whatever the
    /// outcome, and checks every row.
    func run(_ scenarios: [String]) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let report = dir.file("faults.txt")
        // `timeout` ends a hung run; the suite stops its children on SIGTERM.
        let only = scenarios.flatMap { ["--only", $0] }
        let r = try runProcess("/usr/bin/timeout", ["900", "bash", "faults/run.sh", "--ci", "--bin", try metergateBinary(), "--report", report] + only,
                               currentDirectory: repositoryRoot)
        // The failure lines of every scenario first (they may lie far above the end), then the end of the output.
        var failures: [Substring] = [], scenario: Substring?
        for line in r.stdout.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " }
            if trimmed.hasPrefix("== ") { scenario = line; continue }
            guard trimmed.hasPrefix("failure:") || trimmed.hasPrefix("expected failure:") else { continue }
            if let header = scenario { failures.append(header); scenario = nil }
            failures.append(line)
        }
        let output = (failures.isEmpty ? "" : "failures:\n" + failures.joined(separator: "\n") + "\n…\n")
            + String(r.stdout.suffix(8000)) + String(r.stderr.suffix(2000))
        let table = (try? String(contentsOfFile: report, encoding: .utf8)) ?? ""
        // CI keeps what it proved: the table and the seed go into the log on a pass as well.
        print(table.isEmpty ? "fault suite wrote no table:\n\(output)" : table)
        #expect(r.status == 0, "fault suite exited \(r.status):\n\(output)")
        #expect(table.contains("result: PASS"), "\(output)")
        let rows = table.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        for name in scenarios {
            guard let row = rows.first(where: { $0.first == name }) else {
                Issue.record("scenario \(name) is missing from the table:\n\(table)")
                continue
            }
            // scenario expected received verified lost dup breaks gaps replayed unsent time result
            #expect(row.count == 12, "\(row)")
            guard row.count == 12 else { continue }
            // XFAIL: a recorded finding (faults/faultsuite.py, EXPECTED_FAILURES). No SKIP: storage-full runs only
            // where its tmpfs can be mounted (its own test, skipped with the reason otherwise).
            #expect(["PASS", "XFAIL"].contains(row[11]), "\(name): \(row[11])\n\(output)")
            if row[11] == "PASS" {
                if Self.withoutReadings.contains(name) {
                    #expect(row[4] == "n/a" && row[6] == "n/a", "\(name): lost \(row[4]), chain breaks \(row[6])")
                } else {
                    #expect(row[4] == "0" && row[6] == "0", "\(name): lost \(row[4]), chain breaks \(row[6])")
                }
                #expect((Int(row[1]) ?? 0) > 0, "\(name) expected nothing to judge")
            }
        }
    }
}
