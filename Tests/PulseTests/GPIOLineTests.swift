import Foundation
import Pulse
import TestSupport
import Testing

/// The kernel's gpio-sim (configfs), where this machine has it.
enum GPIOSim {
    static let configfs = "/sys/kernel/config/gpio-sim"

    static let isAvailable: Bool = {
        if FileManager.default.fileExists(atPath: configfs) { return true }
        if let modprobe = which("modprobe") { _ = try? runProcess(modprobe, ["gpio-sim"]) }
        return FileManager.default.fileExists(atPath: configfs)
    }()

    /// A live simulated chip with `lines` lines; `pull(_:up:)` drives a line as the outside world would.
    struct Chip {
        let device: String
        let bank: String
        let chipName: String
        let platformDevice: String

        init(lines: Int) throws {
            device = "\(configfs)/metergate-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            bank = "\(device)/bank0"
            let fm = FileManager.default
            try fm.createDirectory(atPath: device, withIntermediateDirectories: false)
            try fm.createDirectory(atPath: bank, withIntermediateDirectories: false)
            try "\(lines)".write(toFile: "\(bank)/num_lines", atomically: false, encoding: .utf8)
            try "1".write(toFile: "\(device)/live", atomically: false, encoding: .utf8)
            chipName = try String(contentsOfFile: "\(bank)/chip_name", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            platformDevice = try String(contentsOfFile: "\(device)/dev_name", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func pull(_ offset: Int, up: Bool) throws {
            try (up ? "pull-up" : "pull-down").write(
                toFile: "/sys/devices/platform/\(platformDevice)/\(chipName)/sim_gpio\(offset)/pull", atomically: false, encoding: .utf8)
        }

        /// The level the line is driven to now (an output requested by MeterGate), as the kernel's simulator sees it.
        func value(_ offset: Int) throws -> Int? {
            Int(try String(contentsOfFile: "/sys/devices/platform/\(platformDevice)/\(chipName)/sim_gpio\(offset)/value", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines))
        }

        func remove() {
            try? "0".write(toFile: "\(device)/live", atomically: false, encoding: .utf8)
            rmdir(bank)
            rmdir(device)
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct GPIOLineTests {
    @Test func aMissingChipIsAClearError() {
        let error = #expect(throws: GPIOError.self) { try GPIOEdgeReader(chip: "gpiochip-metergate-missing", offset: 4) }
        #expect(error?.function == "gpiod_chip_open_lookup")
        #expect(error?.description.contains("gpiochip-metergate-missing") == true)
        #expect(error?.description.contains("gpiodetect") == true)
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        #expect(throws: GPIOError.self) {
            try PulseInputReader(configuration: .init(name: "s0-1", chip: "gpiochip-metergate-missing", offset: 4,
                                                      impulsesPerKilowattHour: 1000, countFile: dir.file("c")))
        }
    }

    @Test(.enabled(if: GPIOSim.isAvailable,
                   "gpio-sim is not available here (no /sys/kernel/config/gpio-sim, and modprobe gpio-sim did not provide it): the libgpiod edge path is only tested where the kernel offers it"))
    func pulsesOnASimulatedLineAreCountedAndPersisted() async throws {
        let chip = try GPIOSim.Chip(lines: 8)
        defer { chip.remove() }
        let missingLine = #expect(throws: GPIOError.self) { try GPIOEdgeReader(chip: chip.chipName, offset: 99) }
        #expect(missingLine?.function == "gpiod_chip_get_line")
        #expect(missingLine?.description.contains("line 99") == true)

        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        try chip.pull(3, up: false)
        let reader = try PulseInputReader(configuration: .init(
            name: "s0-sim", chip: chip.chipName, offset: 3, impulsesPerKilowattHour: 1000, activeLow: false, countFile: dir.file("s0-sim.count")))
        reader.start()
        for _ in 0..<5 {
            try chip.pull(3, up: true)
            usleep(40_000)
            try chip.pull(3, up: false)
            usleep(40_000)
        }
        var last: PulseUpdate?
        for await update in reader.updates {
            last = update
            if update.count == 5 { break }
        }
        await reader.stop()
        #expect(last?.count == 5)
        #expect(try PulseCountStore(path: dir.file("s0-sim.count"), input: "s0-sim", impulsesPerKilowattHour: 1000).load() == 5)
    }
}
