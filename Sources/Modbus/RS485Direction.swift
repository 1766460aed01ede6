internal import CModbus
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Switches an RS-485 transceiver between transmit and receive, for HATs whose DE/RE pins hang on a GPIO line
/// instead of being driven by the UART.
///
/// A ``ModbusConnection`` given one hands it to libmodbus as its RTS function: libmodbus calls
/// ``setTransmitting(_:)`` with `true` just before it writes a request, and with `false` once the request's bytes
/// have had time to leave the UART (the frame's byte time plus the RTS delay), before it waits for the answer.
/// It also calls it once with `false` when the connection is configured, so the bus starts out released.
///
/// - Important: The call comes from inside a blocking libmodbus call, on the thread of the connection's serial
///   queue. It must return promptly and must not wait for Swift concurrency; it cannot throw through the C
///   callback, so it returns what went wrong instead, and the connection fails the request with it.
public protocol RS485DirectionControl: AnyObject, Sendable {
    /// Drives the transceiver to transmit (`true`) or receive (`false`); nil on success, else the failure.
    func setTransmitting(_ transmitting: Bool) -> RS485DirectionError?
    /// What is switched, for logs: "gpiochip0 line 4".
    var description: String { get }
}

/// A direction switch that failed: the C call behind it, its errno, and the full text to log.
public struct RS485DirectionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The C function that failed, e.g. `gpiod_line_set_value`.
    public let function: String
    public let code: Int32
    public let description: String

    public init(function: String, code: Int32, description: String) {
        self.function = function
        self.code = code
        self.description = description
    }
}

/// Maps a libmodbus context to its direction control.
///
/// libmodbus's RTS callback gets only the `modbus_t *`, no user data, so the callback looks the control up
/// here. A context is registered when its connection is configured and removed before the context is freed;
/// the failure of a switch is kept with the entry until the connection takes it after the request.
enum RS485DirectionRegistry {
    private struct Entry {
        let control: any RS485DirectionControl
        var failure: RS485DirectionError?
    }

    private static let entries = Mutex<[UInt: Entry]>([:])

    private static func key(_ context: OpaquePointer) -> UInt { UInt(bitPattern: Int(bitPattern: context)) }

    static func register(_ control: any RS485DirectionControl, for context: OpaquePointer) {
        entries.withLock { $0[key(context)] = Entry(control: control, failure: nil) }
    }

    static func remove(_ context: OpaquePointer) {
        _ = entries.withLock { $0.removeValue(forKey: key(context)) }
    }

    /// The first failed switch since the last call, cleared.
    static func takeFailure(_ context: OpaquePointer) -> RS485DirectionError? {
        entries.withLock { entries in
            defer { entries[key(context)]?.failure = nil }
            return entries[key(context)]?.failure
        }
    }

    /// How many contexts `control` is registered for.
    static func registrations(of control: any RS485DirectionControl) -> Int {
        entries.withLock { $0.values.filter { $0.control === control }.count }
    }

    /// The body of libmodbus's RTS function: `on` is the RTS level, and with `MODBUS_RTU_RTS_UP` the level is
    /// "transmitting". Looks the control up, switches outside the lock, then records a failure.
    static func switchDirection(_ context: OpaquePointer?, _ on: Int32) {
        guard let context, let control = entries.withLock({ $0[key(context)]?.control }) else { return }
        if let failure = control.setTransmitting(on != 0) {
            entries.withLock { entries in
                if entries[key(context)]?.failure == nil { entries[key(context)]?.failure = failure }
            }
        }
    }

    /// Hands `control` to libmodbus as the RTS function of `context`, with RTS up while transmitting, and sets the
    /// delay before and after a frame when given (libmodbus's default is one byte time).
    /// The corresponding C functions are `modbus_rtu_set_custom_rts`, `modbus_rtu_set_rts` (which at once
    /// switches to receive) and `modbus_rtu_set_rts_delay`.
    static func configure(_ context: OpaquePointer, control: any RS485DirectionControl, delayMicroseconds: Int?, device: String) throws(ModbusError) {
        register(control, for: context)
        do throws(ModbusError) {
            guard modbus_rtu_set_custom_rts(context, { RS485DirectionRegistry.switchDirection($0, $1) }) == 0 else {
                throw ModbusError(function: "modbus_rtu_set_custom_rts", code: errno, context: device)
            }
            if let delayMicroseconds, modbus_rtu_set_rts_delay(context, Int32(clamping: delayMicroseconds)) != 0 {
                throw ModbusError(function: "modbus_rtu_set_rts_delay", code: errno, context: "\(device), \(delayMicroseconds) µs")
            }
            guard modbus_rtu_set_rts(context, Int32(MODBUS_RTU_RTS_UP)) == 0 else {
                throw ModbusError(function: "modbus_rtu_set_rts", code: errno, context: device)
            }
            if let failure = takeFailure(context) {
                throw ModbusError(directionFailure: failure, on: control, context: "\(device): releasing the bus")
            }
        } catch {
            remove(context)
            throw error
        }
    }
}

extension ModbusError {
    /// A failed direction switch, as the error of the request it spoiled: the GPIO call and its errno.
    init(directionFailure failure: RS485DirectionError, on control: any RS485DirectionControl, context: String) {
        self.init(function: failure.function, code: failure.code, context: "\(context); switching RS-485 direction on \(control.description)")
    }
}
