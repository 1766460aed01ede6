import Foundation
import TestSupport
import Testing

/// The shipped unit file, checked by systemd's own verifier.
@Suite(.timeLimit(.minutes(5))) struct SystemdUnitTests {
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
        for required in ["Type=notify", "TimeoutStartSec=10min", "WatchdogSec=", "Restart=on-failure", "StateDirectory=metergate", "NoNewPrivileges=yes",
                         "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "RestrictAddressFamilies=", "CapabilityBoundingSet=\n",
                         "SystemCallFilter=~@privileged @resources", "SystemCallErrorNumber=EPERM", "ProtectProc=invisible", "PrivateMounts=yes",
                         "RemoveIPC=yes", "DevicePolicy=closed", "DeviceAllow=char-ttyS rw", "DeviceAllow=char-ttyAMA rw",
                         "DeviceAllow=char-ttyUSB rw", "DeviceAllow=char-gpiochip rw", "DeviceAllow=char-nvidia-frontend rw",
                         "MemoryDenyWriteExecute=yes", "UMask=0077"] {
            #expect(unit.contains(required), "unit lacks \(required)")
        }
        // PrivateDevices=yes would hide the serial ports and GPIO chips; ProcSubset=pid the boot id; PrivateUsers= the dialout group.
        for forbidden in ["PrivateDevices=yes", "ProcSubset=pid", "PrivateUsers=yes"] {
            #expect(!unit.contains("\n\(forbidden)"), "the unit must not set \(forbidden)")
        }
    }

    /// systemd's own exposure score (0 best, 10 worst) of the shipped unit: 2.1 before the device, /proc, IPC and
    /// system call additions, 1.5 after (systemd 252). What is still flagged is what the service needs: network,
    /// supplementary groups (dialout, gpio), hardware devices, /proc/sys and /proc/driver.
    @Test(.timeLimit(.minutes(1)))
    func theUnitsExposureScoreStaysAtMost1point5() throws {
        guard let analyze = which("systemd-analyze") else { throw TestEnvironmentError("systemd-analyze is not installed (apt-get install systemd)") }
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let unit = try String(contentsOfFile: "\(repositoryRoot)/systemd/metergate.service", encoding: .utf8)
        let path = dir.write("metergate.service", unit)
        // --threshold: exit status 1 when the score (times 10) is above it.
        let r = try runProcess(analyze, ["security", "--offline=yes", "--threshold=15", "--no-pager", path])
        let overall = (r.stdout + r.stderr).split(separator: "\n").first { $0.contains("Overall exposure level for metergate.service") }
        #expect(overall != nil, "no overall score: \(r.stdout)\(r.stderr)")
        #expect(r.status == 0, "exposure above 1.5: \(overall.map(String.init) ?? "")\n\(r.stdout)")
    }
}
