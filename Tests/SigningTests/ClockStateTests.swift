import Foundation
import MeterCore
import Signing
import TestSupport
import Testing

/// The gateway's clock state is signed with each record (`clock`) and sets the OCMF time status, so an OCMF
/// verifier sees `S` for intervals timed by a synchronised clock and `U` otherwise.
@Suite(.timeLimit(.minutes(2))) struct ClockStateTests {
    func signed(_ clock: ClockState?, envelope: RecordEnvelope = .jws, key: SigningKey = .generate(.es256)) throws -> SignedRecord {
        let signer = try RecordSigner(gateway: try GatewayID(validating: "gw-1"), meter: try MeterID(validating: "main"), sourceID: "SDM630-0012345",
                                      envelope: envelope, key: key)
        return try signer.sign(result: try StreamBuilder.result(start: 1_736_935_200_000, importTotal: 5_000_000), position: .first(epoch: "E1"),
                               clock: clock)
    }

    @Test(arguments: ClockState.allCases)
    func theClockStateIsSignedAndReadBack(_ clock: ClockState) throws {
        let key = SigningKey.generate(.es256)
        for envelope in [RecordEnvelope.jws, .ocmf] {
            let record = try signed(clock, envelope: envelope, key: key)
            #expect(record.record.canonicalBytes == record.record.json.canonicalBytes)
            #expect(String(decoding: record.record.canonicalBytes, as: UTF8.self).contains("\"clock\":\"\(clock.rawValue)\""))
            let verified = try RecordVerifier(keys: KeySet([key.publicKey])).verify(record.bytes).get()
            #expect(verified.record.clock == clock)
        }
        // Records made before the member existed read as no clock state, and a value outside the three is refused.
        #expect(try signed(nil).record.clock == nil)
        let odd = String(decoding: try signed(.synced).record.canonicalBytes, as: UTF8.self).replacingOccurrences(of: "\"synced\"", with: "\"atomic\"")
        #expect(throws: RecordError.self) { try ReadingRecord(payload: Array(odd.utf8)) }
    }

    @Test func theOCMFTimeStatusFollowsTheClockAndPyocmfWarnsOnlyWhenUnsynced() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let script = """
            import sys
            from pyocmf import OCMF
            o = OCMF.from_string(open(sys.argv[1]).read().strip(), strict=True)
            print(" ".join(sorted({i.code.name for i in o.check_eichrecht(errors_only=False)})) or "none")
            """
        let checker = dir.write("check.py", script)
        var answers: [ClockState: String] = [:]
        for clock in [ClockState.synced, .unsynced, .unknown] {
            let record = try signed(clock, envelope: .ocmf)
            let text = String(decoding: record.bytes, as: UTF8.self)
            #expect(text.contains(clock == .synced ? " S\"" : clock == .unsynced ? " U\"" : " I\""), "\(text)")
            let r = try runProcess(try peerPython(), [checker, dir.write("\(clock).txt", text)])
            #expect(r.status == 0, "\(r.stderr)")
            answers[clock] = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(answers[.synced].map { !$0.contains("TIME_SYNC") } == true, "\(answers)")
        #expect(answers[.unsynced]?.contains("TIME_SYNC") == true, "\(answers)")
        #expect(answers[.unknown]?.contains("TIME_SYNC") == true, "\(answers)")
    }

    @Test func verifyReportsRecordsSignedWithAnUnsyncedClock() throws {
        var analyzer = ChainAnalyzer()
        let key = SigningKey.generate(.eddsa)
        let record = try signed(.unsynced, key: key)
        analyzer.add(RecordVerifier(keys: KeySet([key.publicKey])).verify(record.bytes), line: 1)
        let report = analyzer.report()
        #expect(report.passed)
        #expect(report.streams.first?.unsyncedClock == [1])
        #expect(report.text.contains("signed with the clock not synchronised"), "\(report.text)")
        #expect(report.json.contains("\"unsynced_clock\":[1]"), "\(report.json)")
    }
}
