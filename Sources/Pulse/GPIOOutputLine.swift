internal import CGPIOD
import MeterCore

/// One GPIO line driven as an output (a status LED, an RS-485 direction pin).
///
/// The line is requested once and held; every call is a short ioctl, but still a blocking C call, so the
/// actor runs on a serial queue of its own.
public actor GPIOOutputLine {
    private let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    // Owned by this actor; released and closed in deinit.
    private nonisolated(unsafe) let chip: OpaquePointer
    private nonisolated(unsafe) let line: OpaquePointer
    public nonisolated let chipName: String
    public nonisolated let offset: Int

    /// Requests `offset` on `chipName` as an output set to `initial`.
    /// The corresponding C functions are `gpiod_chip_open_lookup`, `gpiod_chip_get_line` and
    /// `gpiod_line_request_output`.
    public init(chip chipName: String, offset: Int, consumer: String = "metergate", initial: Bool = false) throws(GPIOError) {
        guard let chip = gpiod_chip_open_lookup(chipName) else {
            throw GPIOError(function: "gpiod_chip_open_lookup", code: CGPIOD_errno(), context: "chip '\(chipName)'")
        }
        let count = Int(gpiod_chip_num_lines(chip))
        guard offset >= 0, offset < count, let line = gpiod_chip_get_line(chip, UInt32(offset)) else {
            let code = offset >= 0 && offset < count ? CGPIOD_errno() : EINVAL
            gpiod_chip_close(chip)
            throw GPIOError(function: "gpiod_chip_get_line", code: code, context: "line \(offset) of chip '\(chipName)' (\(count) lines)")
        }
        guard gpiod_line_request_output(line, consumer, initial ? 1 : 0) == 0 else {
            let code = CGPIOD_errno()
            gpiod_chip_close(chip)
            throw GPIOError(function: "gpiod_line_request_output", code: code, context: "line \(offset) of chip '\(chipName)'")
        }
        self.executor = SerialQueueExecutor(label: "metergate.gpio-out.\(chipName).\(offset)")
        self.chip = chip
        self.line = line
        self.chipName = chipName
        self.offset = offset
    }

    deinit {
        gpiod_line_release(line)
        gpiod_chip_close(chip)
    }

    /// Drives the line. The corresponding C function is `gpiod_line_set_value`.
    public func set(_ on: Bool) throws(GPIOError) {
        guard gpiod_line_set_value(line, on ? 1 : 0) == 0 else {
            throw GPIOError(function: "gpiod_line_set_value", code: CGPIOD_errno(), context: "line \(offset) of chip '\(chipName)'")
        }
    }
}
