import Foundation
import MeterCore
@testable import Modbus
import Synchronization
import MeterGateTesting
import TestSupport
import Testing

/// Records each switch with the number of requests the server had received at that moment.
final class RecordingDirection: RS485DirectionControl {
    private let log = Mutex<[(transmitting: Bool, requestsSeen: Int, at: ContinuousClock.Instant)]>([])
    private let requestsSeen: @Sendable () -> Int
    let description = "recording direction line"

    init(requestsSeen: @escaping @Sendable () -> Int) { self.requestsSeen = requestsSeen }

    func setTransmitting(_ transmitting: Bool) -> RS485DirectionError? {
        let seen = requestsSeen()
        log.withLock { $0.append((transmitting, seen, .now)) }
        return nil
    }

    var events: [(transmitting: Bool, requestsSeen: Int, at: ContinuousClock.Instant)] { log.withLock { $0 } }

    /// How long each transmit lasted (from switching on to switching off).
    var transmitDurations: [Duration] {
        let events = self.events
        return zip(events, events.dropFirst()).filter { $0.0.transmitting && !$0.1.transmitting }.map { $0.1.at - $0.0.at }
    }
}

/// Real libmodbus at both ends of a socat pty pair: the client drives an RS-485 direction control through
/// libmodbus's custom RTS callback.
@Suite(.timeLimit(.minutes(5))) struct RS485DirectionTests {
    /// Each request switches to transmit before its frame goes out and back to receive after; the answers are read.
    @Test func eachRequestTransmitsThenReleasesTheBus() async throws {
        let pty = try SocatPTYPair()
        let server = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 38_400), handler: CountingHandler())
        defer { server.stop() }
        let control = RecordingDirection { server.statistics.requests }
        let client = try ModbusConnection(.rtu(SerialSettings(device: pty.b, baud: 38_400)), responseTimeout: .seconds(2), direction: control)
        // Configuring the context releases the bus at once (modbus_rtu_set_rts switches to receive).
        #expect(control.events.map(\.transmitting) == [false])

        let requests = 6
        for i in 0..<requests {
            let address = 10 * i
            if i % 2 == 0 {
                #expect(try await client.readHoldingRegisters(unit: 1 + i, address: address, count: 3) == [30_000, 30_001, 30_002].map { $0 + UInt16(address) })
            } else {
                #expect(try await client.readInputRegisters(unit: 1 + i, address: address, count: 2) == [40_000, 40_001].map { $0 + UInt16(address) })
            }
        }
        let events = control.events
        #expect(events.map(\.transmitting) == [false] + Array(repeating: [true, false], count: requests).flatMap { $0 })
        // Transmit for request k comes while the server has seen only the k requests before it: before the frame.
        let onsAt = events.filter(\.transmitting).map(\.requestsSeen)
        #expect(onsAt == Array(0..<requests))
        #expect(server.statistics.requests == requests)
    }

    /// libmodbus holds the line in transmit for the RTS delay, the frame's byte time, and the delay again: a given
    /// `rts_delay` lengthens every transmit by twice its value. Only lower bounds are checked (sleeps never end early).
    @Test func theRTSDelayHoldsTransmitAroundTheFrame() async throws {
        let pty = try SocatPTYPair()
        let server = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 38_400), handler: CountingHandler())
        defer { server.stop() }
        // 8N1 at 38400 Bd: 10 bits a byte, 260 µs (libmodbus's integer byte time); a read request is 8 bytes.
        let byteTime = Duration.microseconds(1_000_000 * 10 / 38_400)
        for delay in [nil, 5_000] as [Int?] {
            let control = RecordingDirection { server.statistics.requests }
            let client = try ModbusConnection(.rtu(SerialSettings(device: pty.b, baud: 38_400)), responseTimeout: .seconds(2),
                                              direction: control, directionDelayMicroseconds: delay)
            for i in 0..<4 { #expect(try await client.readHoldingRegisters(unit: 1, address: i, count: 1) == [30_000 + UInt16(i)]) }
            await client.close()
            let durations = control.transmitDurations
            let settle = delay.map { Duration.microseconds($0) } ?? byteTime
            #expect(durations.count == 4)
            #expect(durations.allSatisfy { $0 >= settle * 2 + byteTime * 8 }, "\(durations)")
            print("rts_delay \(delay.map { "\($0) µs" } ?? "default"): transmit held \(durations.map { "\(Int($0 / .microseconds(1))) µs" }.joined(separator: ", ")) (at least \(Int((settle * 2 + byteTime * 8) / .microseconds(1))) µs)")
        }
    }

    /// The registration lives as long as the connection; closing keeps it (the next read reopens the port),
    /// freeing the context removes it.
    @Test func theRegistryEntryGoesWithTheConnection() async throws {
        let pty = try SocatPTYPair()
        let server = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 38_400), handler: CountingHandler())
        defer { server.stop() }
        let control = InMemoryRS485Direction()
        var client: ModbusConnection? = try ModbusConnection(.rtu(SerialSettings(device: pty.b, baud: 38_400)), responseTimeout: .seconds(2), direction: control)
        #expect(RS485DirectionRegistry.registrations(of: control) == 1)
        #expect(try await client?.readHoldingRegisters(unit: 2, address: 5, count: 1) == [30_005])
        await client?.close()
        #expect(RS485DirectionRegistry.registrations(of: control) == 1)
        #expect(try await client?.readHoldingRegisters(unit: 2, address: 6, count: 1) == [30_006])
        #expect(control.events == [false, true, false, true, false])
        client = nil
        #expect(waitUntil(timeout: 10) { RS485DirectionRegistry.registrations(of: control) == 0 })
    }

    /// A switch that fails fails the request with the switch's C call and errno, naming the line; once the
    /// line works again the next request is read cleanly.
    @Test func aFailedSwitchFailsTheRequestAndTheNextOneRecovers() async throws {
        let pty = try SocatPTYPair()
        let server = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 38_400), handler: CountingHandler())
        defer { server.stop() }
        let control = InMemoryRS485Direction(description: "gpiochip7 line 4")
        let client = try ModbusConnection(.rtu(SerialSettings(device: pty.b, baud: 38_400)), responseTimeout: .seconds(2), direction: control)
        control.fail(with: RS485DirectionError(function: "gpiod_line_set_value", code: EIO, description: "gpiod_line_set_value failed for line 4"))
        let error = await #expect(throws: ModbusError.self) { try await client.readHoldingRegisters(unit: 3, address: 1, count: 1) }
        #expect(error?.function == "gpiod_line_set_value")
        #expect(error?.code == EIO)
        #expect(error?.description.contains("gpiochip7 line 4") == true)
        #expect(error?.description.contains("unit 3") == true)
        control.fail(with: nil)
        #expect(try await client.readHoldingRegisters(unit: 3, address: 2, count: 2) == [30_002, 30_003])
    }

    /// A line that cannot be released at configuration, a bad RTS delay and a TCP transport are refused when the
    /// connection is made, and leave nothing registered.
    @Test func configurationFailuresAreRefusedAndLeaveNoRegistration() throws {
        let control = InMemoryRS485Direction(description: "gpiochip7 line 4")
        control.fail(with: RS485DirectionError(function: "gpiod_line_set_value", code: EBUSY, description: "busy"))
        let release = #expect(throws: ModbusError.self) {
            try ModbusConnection(.rtu(SerialSettings(device: "/dev/null-rs485", baud: 9600)), direction: control)
        }
        #expect(release?.function == "gpiod_line_set_value")
        #expect(release?.description.contains("releasing the bus") == true)
        control.fail(with: nil)

        let delay = #expect(throws: ModbusError.self) {
            try ModbusConnection(.rtu(SerialSettings(device: "/dev/null-rs485", baud: 9600)), direction: control, directionDelayMicroseconds: -1)
        }
        #expect(delay?.function == "modbus_rtu_set_rts_delay")
        #expect(delay?.code == EINVAL)

        let tcp = #expect(throws: ModbusError.self) {
            try ModbusConnection(.tcp(host: "127.0.0.1", port: 1502), direction: control)
        }
        #expect(tcp?.description.contains("needs an RTU line") == true)
        #expect(RS485DirectionRegistry.registrations(of: control) == 0)

        // A valid delay is taken: the connection is made and registered.
        let client = try ModbusConnection(.rtu(SerialSettings(device: "/dev/null-rs485", baud: 9600)), direction: control, directionDelayMicroseconds: 1500)
        #expect(RS485DirectionRegistry.registrations(of: control) == 1)
        _ = client
    }
}
