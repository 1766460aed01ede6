import ConfigFile
import Foundation
import Gateway
import Logging
import MeterCore
import Modbus
import Pulse
import Synchronization
import MeterGateTesting
import TestSupport
import Testing

/// A board file with one RS-485 port whose DE/RE pin is `direction` (YAML flow mapping text), and a config whose
/// buses use it by port name and by device path, with `rtu` settings added to the first.
private func directionSetup(_ dir: TemporaryDirectory, direction: String = "{ chip: gpiochip0, line: 4, active_low: true }",
                            rtu: String = "", extraPort: String = "") throws -> String {
    try FileManager.default.createDirectory(atPath: dir.file("boards"), withIntermediateDirectories: true)
    _ = dir.write("boards/de-board.yaml", """
        board: de-board
        name: A HAT whose DE/RE pin is a GPIO
        serial:
          - name: rs485-0
            device: /dev/ttyS0
            direction_gpio: \(direction)
          - { name: rs485-auto, device: /dev/ttyS1 }\(extraPort)
        """)
    return dir.write("c.yaml", """
        gateway: { id: gw, board: de-board }
        buses:
          - { id: by-name, rtu: { device: rs485-0\(rtu) } }
          - { id: by-path, rtu: { device: /dev/ttyS0, baud: 19200 } }
          - { id: auto, rtu: { device: rs485-auto } }
        meters:
          - { id: m1, bus: by-name, unit: 1, profile: eastron-sdm630 }
        """)
}

private func load(_ path: String, _ dir: TemporaryDirectory) throws(ConfigErrors) -> GatewayConfig {
    try GatewayConfig.load(path: path, boardDirectories: [dir.file("boards")], profileDirectories: ["\(repositoryRoot)/profiles"])
}

@Suite(.timeLimit(.minutes(5))) struct RS485DirectionConfigTests {
    /// A port with `direction_gpio` is accepted; its buses (named by port or by device path) carry the line.
    @Test func aPortWithADirectionGPIOIsAccepted() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try load(try directionSetup(dir, rtu: ", rts_delay: 250"), dir)
        let buses = Dictionary(uniqueKeysWithValues: config.buses.map { ($0.id.rawValue, $0) })
        let expected = Board.GPIOLineRef(chip: "gpiochip0", line: 4, activeLow: true)
        #expect(buses["by-name"]?.directionLine == expected)
        #expect(buses["by-name"]?.rtsDelayMicroseconds == 250)
        #expect(buses["by-name"]?.transport == .rtu(SerialSettings(device: "/dev/ttyS0")))
        #expect(buses["by-path"]?.directionLine == expected)
        #expect(buses["by-path"]?.rtsDelayMicroseconds == nil)
        #expect(buses["auto"]?.directionLine == nil)
        #expect(config.board.serialPorts.first?.directionLine == expected)
    }

    @Test func theActiveLevelDefaultsToHigh() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try load(try directionSetup(dir, direction: "{ chip: gpiochip2, line: 17 }"), dir)
        #expect(config.buses.first?.directionLine == Board.GPIOLineRef(chip: "gpiochip2", line: 17, activeLow: false))
    }

    /// Bad `direction_gpio` values and a misplaced `rts_delay` are errors at file:line:column naming the key.
    @Test(arguments: [
        (direction: "{ chip: gpiochip0, line: 4000 }", rtu: "", keyPath: "serial[0].direction_gpio.line", message: "from 0 to 1023", file: "de-board.yaml"),
        (direction: "{ chip: gpiochip0, line: 4, active_low: sometimes }", rtu: "", keyPath: "serial[0].direction_gpio.active_low", message: "true or false", file: "de-board.yaml"),
        (direction: "{ chip: gpiochip0, line: 4, polarity: low }", rtu: "", keyPath: "serial[0].direction_gpio.polarity", message: "unknown key", file: "de-board.yaml"),
        (direction: "{ line: 4 }", rtu: "", keyPath: "serial[0].direction_gpio.chip", message: "missing", file: "de-board.yaml"),
        (direction: "gpiochip0:4", rtu: "", keyPath: "serial[0].direction_gpio", message: "expected a mapping", file: "de-board.yaml"),
        (direction: "{ chip: gpiochip0, line: 4 }", rtu: ", rts_delay: 500000", keyPath: "buses[0].rtu.rts_delay", message: "from 0 to 100000", file: "c.yaml"),
        (direction: "{ chip: gpiochip0, line: 4 }", rtu: ", rts_delay: 1ms", keyPath: "buses[0].rtu.rts_delay", message: "expected an integer", file: "c.yaml"),
    ])
    func badDirectionSettingsAreLocatedErrors(_ c: (direction: String, rtu: String, keyPath: String, message: String, file: String)) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try directionSetup(dir, direction: c.direction, rtu: c.rtu)
        let errors = #expect(throws: ConfigErrors.self) { try load(path, dir) }
        let error = try #require(errors?.errors.first)
        #expect(error.keyPath == c.keyPath, "\(error)")
        #expect(error.message.contains(c.message), "\(error)")
        #expect(error.file.hasSuffix(c.file))
        #expect(error.line > 0 && error.column > 0)
        #expect(error.description.contains("\(error.file):\(error.line):\(error.column): \(c.keyPath):"))
    }

    /// `rts_delay` on a port without a direction line, and `active_low` on a GPIO that is not a direction line.
    @Test func directionSettingsElsewhereAreRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try directionSetup(dir)
        try String(contentsOfFile: path, encoding: .utf8)
            .replacingOccurrences(of: "device: rs485-auto }", with: "device: rs485-auto, rts_delay: 100 }")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let errors = #expect(throws: ConfigErrors.self) { try load(path, dir) }
        #expect(errors?.errors.first?.keyPath == "buses[2].rtu.rts_delay")
        #expect(errors?.errors.first?.message.contains("direction_gpio") == true)

        let led = try directionSetup(dir, extraPort: "\nstatus_led: { chip: gpiochip0, line: 5, active_low: true }")
        let ledErrors = #expect(throws: ConfigErrors.self) { try load(led, dir) }
        #expect(ledErrors?.errors.first?.keyPath == "status_led.active_low")
        #expect(ledErrors?.errors.first?.message.contains("unknown key") == true)
    }
}

/// The GPIO adapter and bus opening against a chip that does not exist (this machine has no GPIO chip at all).
@Suite(.timeLimit(.minutes(5))) struct GPIODirectionControlTests {
    @Test func aMissingChipIsAClearError() {
        let error = #expect(throws: GPIOError.self) { try GPIODirectionControl(chip: "gpiochip-rs485-missing", offset: 4, activeLow: false) }
        #expect(error?.function == "gpiod_chip_open_lookup")
        #expect(error?.code == ENOENT)
        #expect(error?.description.contains("gpiochip-rs485-missing") == true)
    }

    /// Opening the buses before the start fails naming the bus, the chip and line, the C call and errno.
    @Test func openingTheBusesNamesTheMissingLine() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try load(try directionSetup(dir, direction: "{ chip: gpiochip-rs485-missing, line: 4 }"), dir)
        let error = #expect(throws: BusOpenError.self) { try PollService.openConnections(config) }
        let text = error?.description ?? ""
        #expect(text.contains("bus 'by-name'"), "\(text)")
        #expect(text.contains("gpiochip-rs485-missing line 4"), "\(text)")
        #expect(text.contains("gpiod_chip_open_lookup"), "\(text)")
        #expect(text.contains("[errno \(ENOENT)]"), "\(text)")
        // A bus without a direction line opens (nothing is touched until the first read).
        let auto = try #require(config.buses.first { $0.id.rawValue == "auto" })
        let connection = try auto.openConnection()
        #expect(connection.direction == nil)
    }
}

/// Answers every register read with its address: enough for any profile to decode something.
private struct EchoHandler: ModbusRequestHandler {
    func respond(to request: ModbusServerRequest) -> ModbusServerResponse {
        .values((0..<request.count).map { UInt16(truncatingIfNeeded: request.address + $0) })
    }
}

/// The poll service over a connection opened before the start, as `run` hands them over: its requests go
/// through the connection's direction control, one transmit and one release each.
@Suite(.timeLimit(.minutes(5))) struct PollServiceDirectionTests {
    @Test func theServicePollsThroughTheConnectionItIsGiven() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let pty = try SocatPTYPair()
        let server = try ModbusRTUServer(settings: SerialSettings(device: pty.a, baud: 38_400), handler: EchoHandler())
        defer { server.stop() }
        let config = try GatewayConfig.load(path: dir.write("c.yaml", """
            gateway: { id: gw, board: sim, state_dir: \(dir.file("state")) }
            buses:
              - { id: rtu, rtu: { device: \(pty.b), baud: 38400 }, timeout: 2s }
            meters:
              - { id: m1, bus: rtu, unit: 1, profile: eastron-sdm630, poll: 200ms }
            """), boardDirectories: ["\(repositoryRoot)/boards"], profileDirectories: ["\(repositoryRoot)/profiles"])
        let bus = try #require(config.buses.first)
        let control = InMemoryRS485Direction()
        let connection = try ModbusConnection(bus.transport, responseTimeout: bus.responseTimeout, direction: control)
        let samples = Mutex<[Sample]>([])
        let service = PollService(config: config, logger: Logger(label: "test"), connections: [bus.id: connection]) { sample, _ in
            samples.withLock { $0.append(sample) }
        }
        let running = Task { try await service.run() }
        #expect(waitUntil(timeout: 30) { samples.withLock { $0.count } >= 2 })
        running.cancel()
        _ = await running.result
        let events = control.events
        // The release at configuration, then transmit/release per request sent (the server counts each on arrival).
        #expect(waitUntil(timeout: 10) { server.statistics.requests * 2 == events.count - 1 }, "\(events.count) switches for \(server.statistics.requests) requests")
        #expect(server.statistics.requests >= 2)
        #expect(events.first == false)
        #expect(zip(events.dropFirst(), [true, false].cycled(events.count)).allSatisfy { $0 == $1 })
        #expect(samples.withLock { $0.allSatisfy { $0.meter.rawValue == "m1" } })
    }
}

private extension Array {
    /// The array repeated to `count` elements.
    func cycled(_ count: Int) -> [Element] { (0..<count).map { self[$0 % self.count] } }
}
