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
