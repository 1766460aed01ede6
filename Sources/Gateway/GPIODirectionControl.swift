import MeterCore
import Modbus
import Pulse

/// An RS-485 transceiver's DE/RE pins on a GPIO output line: the line is active (DE high, or low with
/// `active_low`) while MeterGate transmits and inactive while it listens.
///
/// The line is requested at once, set to receive, and held as long as the control lives (its Modbus
/// connection keeps it). libmodbus switches it from the connection's serial queue, so each switch is a
/// synchronous `gpiod_line_set_value` there (``GPIOOutputLine/setBlocking(_:)``).
public final class GPIODirectionControl: RS485DirectionControl {
    public let line: GPIOOutputLine
    public let description: String

    /// Requests `offset` on `chip` as an output in the receive state.
    /// - Throws: ``GPIOError`` naming the chip, the line, the C call and errno (a missing chip, a busy line).
    public init(chip: String, offset: Int, activeLow: Bool) throws(GPIOError) {
        line = try GPIOOutputLine(chip: chip, offset: offset, consumer: "metergate-rs485-de", initial: false, activeLow: activeLow)
        description = "\(chip) line \(offset)\(activeLow ? " (active low)" : "")"
    }

    public func setTransmitting(_ transmitting: Bool) -> RS485DirectionError? {
        do {
            try line.setBlocking(transmitting)
            return nil
        } catch {
            return RS485DirectionError(function: error.function, code: error.code, description: error.description)
        }
    }
}

extension BusConfig {
    /// Opens the bus's libmodbus context, with the board port's direction line where it has one.
    /// - Throws: ``BusOpenError`` naming the bus and what failed (the GPIO request or the libmodbus context).
    public func openConnection() throws(BusOpenError) -> ModbusConnection {
        var direction: GPIODirectionControl?
        if let ref = directionLine {
            do { direction = try GPIODirectionControl(chip: ref.chip, offset: ref.line, activeLow: ref.activeLow) } catch {
                throw BusOpenError(bus: id, message: "cannot drive its RS-485 direction line \(ref.chip) line \(ref.line) (direction_gpio of the board's port): \(error)")
            }
        }
        do {
            return try ModbusConnection(transport, responseTimeout: responseTimeout, direction: direction, directionDelayMicroseconds: rtsDelayMicroseconds)
        } catch {
            throw BusOpenError(bus: id, message: "\(error)")
        }
    }
}

/// A bus that could not be opened at start: its id and the reason, with the C call and errno.
public struct BusOpenError: Error, CustomStringConvertible {
    public let bus: Identifier
    public let message: String
    public var description: String { "bus '\(bus)': \(message)" }
}
