import MeterCore
import MeterGateTesting
import Modbus
import TestSupport
import Testing

/// What the bus poller relies on from any ``RegisterReader``, checked against both implementations over the same
/// answers: a libmodbus connection to a libmodbus TCP server, and the in-memory reader the unit tests use.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RegisterReaderContractTests {
    /// Unit 1 answers values, unit 2 an exception, unit 3 nothing, unit 4 a frame of the wrong length.
    struct Answers: ModbusRequestHandler {
        func respond(to request: ModbusServerRequest) -> ModbusServerResponse {
            switch request.unit {
            case 1: return .values((0..<request.count).map { UInt16(truncatingIfNeeded: request.address * 10 + $0 + request.functionCode) })
            case 2: return .exception(.illegalDataAddress)
            case 4: return .corrupted((0..<request.count).map { UInt16($0) })
            default: return .noAnswer
            }
        }
    }

    static func check(_ reader: any RegisterReader, name: String) async throws {
        // Values, from the space asked for.
        #expect(try await reader.readRegisters(unit: 1, space: .input, address: 100, count: 3) == [1004, 1005, 1006], "\(name)")
        #expect(try await reader.readRegisters(unit: 1, space: .holding, address: 7, count: 2) == [73, 74], "\(name)")
        // Each failure with its kind and the libmodbus function named.
        for (unit, kind) in [(2, ModbusError.Kind.exception(.illegalDataAddress)), (3, .timeout), (4, .badFrame)] {
            do {
                let words = try await reader.readRegisters(unit: unit, space: .holding, address: 0, count: 2)
                Issue.record("\(name): unit \(unit) gave \(words), expected \(kind)")
            } catch {
                #expect(error.kind == kind, "\(name): unit \(unit): \(error)")
                #expect(error.function == "modbus_read_registers", "\(name): \(error)")
            }
        }
        // The connection is still good after every kind of failure.
        #expect(try await reader.readRegisters(unit: 1, space: .input, address: 0, count: 1) == [4], "\(name)")
    }

    @Test func theInMemoryReaderKeepsTheContract() async throws {
        try await Self.check(InMemoryRegisterReader(Answers()), name: "in-memory")
    }

    @Test func aLibmodbusConnectionKeepsTheContractAgainstALibmodbusServer() async throws {
        let server = try ModbusTCPServer(port: 0, handler: Answers())
        defer { server.stop() }
        let connection = try ModbusConnection(.tcp(host: "127.0.0.1", port: server.port), responseTimeout: .milliseconds(300))
        try await Self.check(connection, name: "libmodbus")
    }
}
