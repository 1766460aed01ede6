import Foundation
import TestSupport
import Testing

/// The shipped unit file, checked by systemd's own verifier.
@Suite struct SystemdUnitTests {
    @Test func theUnitPassesSystemdAnalyzeVerify() throws {
        guard let analyze = which("systemd-analyze") else { throw TestEnvironmentError("systemd-analyze is not installed (apt-get install systemd)") }
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        // verify checks that ExecStart binaries exist: point them at the built one.
        let unit = try String(contentsOfFile: "\(repositoryRoot)/systemd/metergate.service", encoding: .utf8)
            .replacingOccurrences(of: "/usr/bin/metergate", with: try metergateBinary())
        let path = dir.write("metergate.service", unit)
        let r = try runProcess(analyze, ["verify", path])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(!r.stderr.contains("metergate.service:"), "systemd-analyze complained: \(r.stderr)")
        for required in ["Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=metergate", "NoNewPrivileges=yes",
                         "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "RestrictAddressFamilies=", "CapabilityBoundingSet=\n"] {
            #expect(unit.contains(required), "unit lacks \(required)")
        }
    }
}
