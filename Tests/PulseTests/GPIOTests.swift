import Pulse
import Testing

@Suite struct GPIOTests {
    @Test func reportsTheLibraryVersion() {
        #expect(libgpiodVersion.hasPrefix("1."))
    }

    @Test func aMissingChipIsAClearError() {
        let error = #expect(throws: GPIOError.self) { try GPIOChip("gpiochip-that-does-not-exist") }
        #expect(error?.function == "gpiod_chip_open_lookup")
        #expect(error?.description.contains("gpiochip-that-does-not-exist") == true)
    }
}

@Suite struct GPIOOutputLineTests {
    @Test func aMissingChipIsAClearErrorNamingIt() {
        let error = #expect(throws: GPIOError.self) { try GPIOOutputLine(chip: "gpiochip-status-led-missing", offset: 22) }
        #expect(error?.function == "gpiod_chip_open_lookup")
        #expect(error?.description.contains("gpiochip-status-led-missing") == true)
        #expect(error?.description.contains("gpiodetect") == true, "the hint names the tool that lists chips")
    }
}
