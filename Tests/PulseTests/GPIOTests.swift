import Dispatch
import Foundation
import Pulse
import Testing

@Suite(.timeLimit(.minutes(5))) struct GPIOTests {
    @Test func reportsTheLibraryVersion() {
        #expect(libgpiodVersion.hasPrefix("1."))
    }

    @Test func aMissingChipIsAClearError() {
        let error = #expect(throws: GPIOError.self) { try GPIOChip("gpiochip-that-does-not-exist") }
        #expect(error?.function == "gpiod_chip_open_lookup")
        #expect(error?.description.contains("gpiochip-that-does-not-exist") == true)
    }
}

@Suite(.timeLimit(.minutes(5))) struct GPIOOutputLineTests {
    @Test func aMissingChipIsAClearErrorNamingIt() {
        let error = #expect(throws: GPIOError.self) { try GPIOOutputLine(chip: "gpiochip-status-led-missing", offset: 22) }
        #expect(error?.function == "gpiod_chip_open_lookup")
        #expect(error?.description.contains("gpiochip-status-led-missing") == true)
        #expect(error?.description.contains("gpiodetect") == true, "the hint names the tool that lists chips")
    }

    @Test func anActiveLowLineOnAMissingChipIsAClearError() {
        let error = #expect(throws: GPIOError.self) {
            try GPIOOutputLine(chip: "gpiochip-rs485-de-missing", offset: 4, consumer: "metergate-rs485-de", activeLow: true)
        }
        #expect(error?.function == "gpiod_chip_open_lookup")
        #expect(error?.description.contains("gpiochip-rs485-de-missing") == true)
    }

    /// An RS-485 direction line on a real (simulated) chip: requested inactive, inverted with active_low, and
    /// driven both through the actor and synchronously from another thread, as libmodbus's callback does.
    @Test(.enabled(if: GPIOSim.isAvailable,
                   "gpio-sim is not available here (no /sys/kernel/config/gpio-sim, and modprobe gpio-sim did not provide it)"))
    func aDirectionLineIsDrivenAtTheRightLevel() async throws {
        let chip = try GPIOSim.Chip(lines: 8)
        defer { chip.remove() }
        let high = try GPIOOutputLine(chip: chip.chipName, offset: 2, initial: false)
        #expect(try chip.value(2) == 0)
        try await high.set(true)
        #expect(try chip.value(2) == 1)
        let low = try GPIOOutputLine(chip: chip.chipName, offset: 5, initial: false, activeLow: true)
        #expect(try chip.value(5) == 1, "inactive on an active-low line is the high level")
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue(label: "rs485-test").async {
                try? low.setBlocking(true)
                done.resume()
            }
        }
        #expect(try chip.value(5) == 0)
        try low.setBlocking(false)
        #expect(try chip.value(5) == 1)
        let busy = #expect(throws: GPIOError.self) { try GPIOOutputLine(chip: chip.chipName, offset: 5) }
        #expect(busy?.code == EBUSY)
    }
}
