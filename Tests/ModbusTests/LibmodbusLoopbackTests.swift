import MeterCore
import Modbus
import TestSupport
import Testing

/// Answers FC03/FC04 with `address + i`, and exception 2 above address 1000.
struct CountingHandler: ModbusRequestHandler {
    func respond(to request: ModbusServerRequest) -> ModbusServerResponse {
        if request.address >= 1000 { return .exception(.illegalDataAddress) }
        if request.unit == 9 { return .noAnswer }
        return .values((0..<request.count).map { UInt16(request.address + $0 + request.functionCode * 10_000) })
    }
}

@Suite(.timeLimit(.minutes(5))) struct LibmodbusLoopbackTests {
    @Test func clientReadsRegistersFromServerOverTCP() async throws {
        let server = try ModbusTCPServer(port: 0, handler: CountingHandler())
        defer { server.stop() }
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: server.port))
        #expect(try await client.readHoldingRegisters(unit: 1, address: 100, count: 3) == [30100, 30101, 30102])
        #expect(try await client.readInputRegisters(unit: 2, address: 7, count: 2) == [40007, 40008])
    }

    @Test func exceptionRepliesKeepTheirCode() async throws {
        let server = try ModbusTCPServer(port: 0, handler: CountingHandler())
        defer { server.stop() }
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: server.port))
        let error = await #expect(throws: ModbusError.self) { try await client.readHoldingRegisters(unit: 1, address: 2000, count: 1) }
        #expect(error?.kind == .exception(.illegalDataAddress))
        #expect(error?.function == "modbus_read_registers")
        #expect(error?.description.contains("unit 1") == true)
    }

    @Test func aSilentUnitTimesOut() async throws {
        let server = try ModbusTCPServer(port: 0, handler: CountingHandler())
        defer { server.stop() }
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: server.port), responseTimeout: .milliseconds(200))
        let error = await #expect(throws: ModbusError.self) { try await client.readHoldingRegisters(unit: 9, address: 1, count: 1) }
        #expect(error?.kind == .timeout)
        // The connection recovers for the next unit.
        #expect(try await client.readHoldingRegisters(unit: 1, address: 1, count: 1) == [30001])
    }

    @Test func aClosedPortIsAConnectionError() async throws {
        let client = try ModbusConnection(.tcp(host: "127.0.0.1", port: freeLoopbackPort()))
        let error = await #expect(throws: ModbusError.self) { try await client.readHoldingRegisters(unit: 1, address: 0, count: 1) }
        #expect(error?.function == "modbus_connect")
        #expect(error?.kind == .connection)
        #expect(!libmodbusVersion.isEmpty)
    }
}

@Suite(.timeLimit(.minutes(5))) struct RegisterDecodingTests {
    @Test func decodesEachTypeInEachWordOrder() {
        #expect(decodeRegisters([0x4248, 0x0000], as: .float32) == .float(50))
        #expect(decodeRegisters([0x0000, 0x4248], as: .float32, wordOrder: .littleEndian) == .float(50))
        #expect(decodeRegisters([0x4842, 0x0000], as: .float32, byteOrder: .swapped) == .float(50))
        #expect(decodeRegisters([0xFFFF], as: .i16) == .signed(-1))
        #expect(decodeRegisters([0x0001, 0x0002], as: .u32) == .unsigned(0x0001_0002))
        #expect(decodeRegisters([0x0002, 0x0001], as: .u32, wordOrder: .littleEndian) == .unsigned(0x0001_0002))
        #expect(decodeRegisters([0xFFFF, 0xFFFE], as: .i32) == .signed(-2))
        #expect(decodeRegisters([0, 0, 0x0001, 0x86A0], as: .u64) == .unsigned(100_000))
        #expect(decodeRegisters([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], as: .i64) == .signed(-1))
        #expect(decodeRegisters([0x4059, 0, 0, 0], as: .float64) == .float(100))
        #expect(decodeRegisters([1], as: .u32) == nil)
    }

    @Test func encodingInvertsDecoding() {
        for type in RegisterType.allCases {
            for order in WordOrder.allCases {
                for bytes in ByteOrder.allCases {
                    let value: RegisterValue = type == .float32 || type == .float64 ? .float(1234.5) : (type == .i16 || type == .i32 || type == .i64 ? .signed(-1234) : .unsigned(1234))
                    let words = encodeRegisters(value, as: type, wordOrder: order, byteOrder: bytes)
                    #expect(decodeRegisters(words, as: type, wordOrder: order, byteOrder: bytes) == value, "\(type) \(order) \(bytes)")
                }
            }
        }
    }
}
