import MeterCore
import Modbus

/// Reads registers straight from a ``ModbusRequestHandler`` (the simulator's meters, a test's map), without a
/// socket or a serial line: what a `ModbusConnection` to a server answering from the same handler reads, errors
/// included (the contract test in ModbusTests runs both). A delayed answer comes at once: there is no clock here.
/// An actor on its own queue, as the real connection is.
public actor InMemoryRegisterReader: RegisterReader {
    public let handler: any ModbusRequestHandler
    private let executor = SerialQueueExecutor(label: "metergate.in-memory-reader")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public init(_ handler: any ModbusRequestHandler) { self.handler = handler }

    public func readRegisters(unit: Int, space: RegisterField.Space, address: Int, count: Int) throws(ModbusError) -> [UInt16] {
        let function = space == .holding ? "modbus_read_registers" : "modbus_read_input_registers"
        let context = "unit \(unit), FC0\(space == .holding ? 3 : 4) @\(address) ×\(count)"
        var response = handler.respond(to: ModbusServerRequest(unit: unit, functionCode: space == .holding ? 3 : 4, address: address, count: count))
        while case .delayed(_, let inner) = response { response = inner }
        switch response {
        case .values(let words) where words.count == count: return words
        case .values, .corrupted: throw .damagedFrame(function: function, context: context)
        case .exception(let exception): throw .answered(exception, function: function, context: context)
        case .noAnswer: throw .timedOut(function: function, context: context)
        case .delayed: throw .timedOut(function: function, context: context)   // unreachable: unwrapped above
        }
    }
}
