internal import CGPIOD
import MeterCore
import Synchronization

/// One GPIO line driven as an output (a status LED, an RS-485 direction pin).
///
/// The line is requested once and held; every call is a short ioctl, but still a blocking C call, so the
/// actor runs on a serial queue of its own. A caller already on a thread that may block (libmodbus's RTS
/// callback on a Modbus connection's queue) drives it with ``setBlocking(_:)`` instead.
public actor GPIOOutputLine {
    private let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    // Owned by this actor; released and closed with it.
    private nonisolated let requested: RequestedGPIOLine
    private nonisolated var line: OpaquePointer { requested.line }
    public nonisolated var chipName: String { requested.chipName }
    public nonisolated var offset: Int { requested.offset }
    /// With `activeLow`, libgpiod inverts: `true` drives the pin low.
    public nonisolated let activeLow: Bool
    /// Serialises the value calls of ``set(_:)`` and ``setBlocking(_:)``, which come from different threads.
    private let valueLock = Mutex<Void>(())

    /// Requests `offset` on `chipName` as an output set to `initial` (a logical value: with `activeLow`,
    /// `true` is the low level). The corresponding C functions are `gpiod_chip_open_lookup`,
    /// `gpiod_chip_get_line` and `gpiod_line_request_output_flags`.
    public init(chip chipName: String, offset: Int, consumer: String = "metergate", initial: Bool = false, activeLow: Bool = false) throws(GPIOError) {
        let flags = activeLow ? Int32(GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW) : 0
        requested = try RequestedGPIOLine(chip: chipName, offset: offset, function: "gpiod_line_request_output_flags") {
            gpiod_line_request_output_flags($0, consumer, flags, initial ? 1 : 0)
        }
        self.activeLow = activeLow
        self.executor = SerialQueueExecutor(label: "metergate.gpio-out.\(chipName).\(offset)")
    }

    /// Drives the line. The corresponding C function is `gpiod_line_set_value`.
    public func set(_ on: Bool) throws(GPIOError) {
        try setBlocking(on)
    }

    /// Drives the line at once on the calling thread, outside the actor.
    ///
    /// - Important: Call it only from a thread that may block (a serial queue of its own, as libmodbus's RTS
    ///   callback runs on), never from a task on the cooperative pool; there, `await` ``set(_:)``.
    /// The corresponding C function is `gpiod_line_set_value`.
    public nonisolated func setBlocking(_ on: Bool) throws(GPIOError) {
        let failed: Int32? = valueLock.withLock { _ in
            gpiod_line_set_value(line, on ? 1 : 0) == 0 ? nil : CGPIOD_errno()
        }
        if let failed {
            throw GPIOError(function: "gpiod_line_set_value", code: failed, context: "line \(offset) of chip '\(chipName)'")
        }
    }
}
