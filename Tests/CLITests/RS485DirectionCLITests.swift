import Foundation
import TestSupport
import Testing

/// `metergate check`, `run` and `scan` with an RS-485 port whose DE/RE pin is a GPIO line.
@Suite(.timeLimit(.minutes(5))) struct RS485DirectionCLITests {
    /// A board whose port needs `direction_gpio` on `chip`, and a config polling a meter on it.
    private func setup(_ dir: TemporaryDirectory, chip: String) throws -> (config: String, boards: String) {
        try FileManager.default.createDirectory(atPath: dir.file("boards"), withIntermediateDirectories: true)
        _ = dir.write("boards/de-hat.yaml", """
            board: de-hat
            name: A HAT whose DE/RE pin is a GPIO
            serial:
              - { name: rs485-0, device: \(dir.file("ttyS0")), direction_gpio: { chip: \(chip), line: 4, active_low: true } }
            """)
        let config = dir.write("metergate.yaml", """
            gateway: { id: gw, board: de-hat, state_dir: \(dir.file("state")) }
            buses:
              - { id: rs485, rtu: { device: rs485-0, baud: 9600, rts_delay: 300 } }
            meters:
              - { id: m1, bus: rs485, unit: 1, profile: eastron-sdm630 }
            mqtt: { host: 127.0.0.1, port: \(freeLoopbackPort()) }
            metrics: { enabled: false }
            """)
        return (config, dir.file("boards"))
    }

    @Test func checkAcceptsThePortAndPrintsItsDirectionLine() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let (config, boards) = try setup(dir, chip: "gpiochip0")
        // --skip-key: this is about the board port; the config names no signing key.
        let r = try runProcess(try metergateBinary(), ["check", "--config", config, "--boards", boards, "--skip-key"], currentDirectory: repositoryRoot)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("rs485_direction: gpiochip0 line 4, active low while sending  rts_delay: 300 µs"), "\(r.stdout)")
    }

    /// `run` opens the direction line before anything else and stops at once when its chip is missing.
    @Test func runStopsNamingTheMissingChipAndLine() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let (config, boards) = try setup(dir, chip: "gpiochip-rs485-cli-missing")
        let r = try runProcess(try metergateBinary(), ["run", "--config", config, "--boards", boards], currentDirectory: repositoryRoot)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("bus 'rs485'"), "\(r.stderr)")
        #expect(r.stderr.contains("gpiochip-rs485-cli-missing line 4"), "\(r.stderr)")
        #expect(r.stderr.contains("gpiod_chip_open_lookup"), "\(r.stderr)")
        #expect(r.stderr.contains("[errno \(ENOENT)]"), "\(r.stderr)")
    }

    @Test func scanDrivesTheLineItIsGivenOrSaysWhyNot() throws {
        let missing = try runProcess(try metergateBinary(), ["scan", "--rtu", "/dev/null", "--units", "1", "--direction-gpio", "gpiochip-rs485-scan-missing:4"])
        #expect(missing.status == 1, "\(missing.stderr)")
        #expect(missing.stderr.contains("gpiochip-rs485-scan-missing"), "\(missing.stderr)")
        #expect(missing.stderr.contains("gpiod_chip_open_lookup"), "\(missing.stderr)")
        for bad in [["--direction-gpio", "gpiochip0"], ["--direction-gpio", "gpiochip0:x"], ["--rts-delay", "100"]] {
            let r = try runProcess(try metergateBinary(), ["scan", "--rtu", "/dev/null", "--units", "1"] + bad)
            #expect(r.status == 2, "\(bad): \(r.stderr)")
        }
        let tcp = try runProcess(try metergateBinary(), ["scan", "--tcp", "127.0.0.1:1502", "--direction-gpio", "gpiochip0:4"])
        #expect(tcp.status == 2, "\(tcp.stderr)")
    }
}
