import Foundation
import TestSupport
import Testing

/// The bounded CI subset of the fault suite (`bash faults/run.sh --ci`): the real gateway killed with SIGKILL,
/// its broker killed and held down, meters failing on a shared RTU bus, its database damaged on disk, and a
/// corpus of malformed config files. The suite accounts for every reading (produced, received, verified,
/// lost, duplicated, chain breaks) and exits non-zero on any failure that is not a recorded finding. Also: a
/// slow and a replaced meter, the outbox quota (dropping, signed, or keeping) and a really full disk, unusable signing keys, and a TLS broker
/// the gateway is given the wrong CA for.
@Suite(.serialized) struct FaultSuiteTests {
    static let scenarios = ["sigkill", "broker", "meters", "counter-reset", "counter-rollover", "counter-rated", "corrupt-frames",
                            "storage-structure", "storage-content", "storage-wal", "config-corpus", "clock",
                            "meter-slow", "meter-replaced", "storage-quota", "storage-quota-keep", "storage-full", "bad-keys",
                            "tls-wrong-ca"]

    @Test func theCISubsetLosesNothingAndBreaksNoChain() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let report = dir.file("faults.txt")
        // `timeout` ends a hung run; the suite stops its children on SIGTERM.
        let r = try runProcess("/usr/bin/timeout", ["900", "bash", "faults/run.sh", "--ci", "--bin", try metergateBinary(), "--report", report],
                               currentDirectory: repositoryRoot)
        let output = String(r.stdout.suffix(8000)) + String(r.stderr.suffix(2000))
        #expect(r.status == 0, "fault suite exited \(r.status):\n\(output)")
        let table = (try? String(contentsOfFile: report, encoding: .utf8)) ?? ""
        #expect(table.contains("result: PASS"), "\(output)")
        let rows = table.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        for name in Self.scenarios {
            guard let row = rows.first(where: { $0.first == name }) else {
                Issue.record("scenario \(name) is missing from the table:\n\(table)")
                continue
            }
            // scenario produced received verified lost dup breaks gaps replayed unsent time result
            #expect(row.count == 12, "\(row)")
            guard row.count == 12 else { continue }
            // XFAIL: a recorded finding (faults/faultsuite.py, EXPECTED_FAILURES). SKIP only for storage-full
            // where this machine refuses to mount its tmpfs (not root, or a container without the right).
            let skipAllowed = name == "storage-full" && r.stdout.contains("cannot mount a tmpfs for the data directory")
            #expect(["PASS", "XFAIL"].contains(row[11]) || (skipAllowed && row[11] == "SKIP"), "\(name): \(row[11])\n\(output)")
            if row[11] == "PASS" {
                #expect(row[4] == "0" && row[6] == "0", "\(name): lost \(row[4]), chain breaks \(row[6])")
                #expect((Int(row[1]) ?? 0) > 0, "\(name) produced nothing to judge")
            }
        }
    }
}
