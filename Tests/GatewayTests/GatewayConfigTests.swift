import Delivery
import ConfigFile
import Foundation
import Modbus
import Outbox
import Signing
import Gateway
import MQTT
import MeterCore
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct GatewayConfigTests {
    static let boards = ["\(repositoryRoot)/boards"]
    static let profiles = ["\(repositoryRoot)/profiles"]

    func load(_ path: String) throws(ConfigErrors) -> GatewayConfig {
        try GatewayConfig.load(path: path, boardDirectories: Self.boards, profileDirectories: Self.profiles)
    }

    /// Writes `yaml` to a file and returns the errors loading it gives.
    func errors(_ yaml: String) -> [ConfigError] {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        do {
            _ = try load(dir.write("c.yaml", yaml))
            return []
        } catch {
            return error.errors
        }
    }

    static let valid = """
        gateway: { id: gw1, board: sim, state_dir: /tmp/mg }
        buses:
          - { id: b1, tcp: { host: 127.0.0.1, port: 1502 } }
        meters:
          - { id: m1, bus: b1, unit: 1, profile: eastron-sdm630 }
        """

    @Test func theShippedExamplesAreValid() throws {
        let demo = try load("\(repositoryRoot)/examples/demo/metergate.yaml")
        #expect(demo.gateway.rawValue == "demo-gw")
        #expect(demo.board.id == "sim")
        #expect(demo.meters.map(\.id.rawValue) == ["main-incomer", "rack-a", "pv-inverter"])
        #expect(demo.rails.sources.map(\.id.rawValue) == ["gpu-0", "cpu-socket-0"])
        #expect(demo.interval == .seconds(15))
        let substation = try load("\(repositoryRoot)/examples/substation.yaml")
        // The board's port name resolves to its device and RS-485 mode.
        if case .rtu(let serial) = substation.buses[0].transport {
            #expect(serial.device == "/dev/ttyAMA0")
            #expect(serial.rs485)
        } else {
            Issue.record("expected an RTU bus")
        }
        #expect(substation.mqtt.port == 8883)
    }

    @Test func defaultsAreFilledIn() throws {
        #expect(errors(Self.valid).isEmpty)
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let c = try load(dir.write("c.yaml", Self.valid))
        #expect(c.interval == .seconds(900))
        #expect(c.outbox.path == "/tmp/mg/outbox.sqlite")
        #expect(c.outbox.quotaPolicy == .keep)
        #expect(c.signing.algorithm == .eddsa)
        #expect(c.meters[0].pollInterval == .seconds(1))
    }

    /// A meter is polled for the values its records are made of only: for an SDM630, the power and the two
    /// counters (6 registers in 2 requests) instead of all 32 values (92 registers).
    @Test func aMeterIsPolledForTheValuesRecordsNeed() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let meter = try load(dir.write("c.yaml", Self.valid)).meters[0]
        #expect(meter.polled.quantities == [.energyImport, .energyExport, .power])
        #expect(meter.polled.period == meter.pollInterval && meter.polled.unit == 1 && meter.polled.id == meter.id)
        let plan = RequestPlan(profile: meter.profile, quantities: meter.polled.quantities)
        #expect(plan.requests.map(\.registers) == [52..<54, 72..<76], "\(plan.requests)")
        #expect(RequestPlan(profile: meter.profile).registerCount == 92)
    }

    /// `check` warns of plaintext MQTT to another machine and of a password file others can read; the replay
    /// bounds are read from `mqtt.replay`.
    @Test func insecureMQTTSettingsAreAdvisedAndReplayBoundsRead() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let password = dir.write("mqtt.pass", "secret\n")
        chmod(password, 0o644)
        let plain = try load(dir.write("p.yaml", Self.valid + "\nmqtt: { host: broker.example.net, username: gw1, password_file: \(password), replay: { max_records: 500, budget_per_minute: 2000, queue: 8 } }\n"))
        #expect(plain.advisories.contains { $0.contains("plaintext MQTT to broker.example.net") }, "\(plain.advisories)")
        #expect(plain.advisories.contains { $0.contains("mqtt.password_file") && $0.contains("644") }, "\(plain.advisories)")
        #expect(plain.mqtt.replay.maximumRecordsPerRequest == 500 && plain.mqtt.replay.budgetPerMinute == 2000 && plain.mqtt.replay.maximumQueued == 8)
        chmod(password, 0o600)
        let local = try load(dir.write("l.yaml", Self.valid + "\nmqtt: { host: 127.0.0.1, password_file: \(password) }\n"))
        #expect(!local.advisories.contains { $0.contains("mqtt") }, "\(local.advisories)")
        #expect(local.mqtt.replay.maximumRecordsPerRequest == 10_000)
        #expect(errors(Self.valid + "\nmqtt: { host: h, replay: { max_records: 0 } }\n").map(\.keyPath) == ["mqtt.replay.max_records"])
    }

    /// A gateway that only counts S0 pulses needs no meters or buses; a config with no source at all is advised.
    @Test func pulsesAloneAreAGatewayAndNoSourceIsAnError() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let pulses = try load(dir.write("s0.yaml", """
            gateway: { id: gw1, board: raspberry-pi-4-de-gpio, state_dir: /tmp/mg }
            pulses:
              - { id: heat-pump, input: s0-1, impulses_per_kwh: 1000 }
            """))
        #expect(pulses.meters.isEmpty && pulses.pulses.map(\.id.rawValue) == ["heat-pump"])
        let none = try load(dir.write("none.yaml", "gateway: { id: gw1, board: sim, state_dir: /tmp/mg }\n"))
        #expect(none.advisories.contains { $0.hasPrefix("no sources") }, "\(none.advisories)")
        #expect(!pulses.advisories.contains { $0.hasPrefix("no sources") })
    }

    @Test func theSignatureSelfCheckIsOnUnlessTurnedOffAndThenAdvised() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let on = try load(dir.write("on.yaml", Self.valid))
        #expect(on.signing.selfCheck)
        #expect(!on.advisories.contains { $0.contains("self_check") })
        let off = try load(dir.write("off.yaml", Self.valid + "\nsigning: { self_check: false }\n"))
        #expect(!off.signing.selfCheck)
        #expect(off.advisories.contains { $0.hasPrefix("signing.self_check is false") })
        let e = errors(Self.valid + "\nsigning: { self_check: sometimes }\n")
        #expect(e.map(\.keyPath) == ["signing.self_check"])
    }

    @Test func theStateSaveIntervalDefaultsToTenSecondsAndIsBounded() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        #expect(try load(dir.write("default.yaml", Self.valid)).outbox.stateSave == .seconds(10))
        #expect(try load(dir.write("5m.yaml", Self.valid + "\noutbox: { state_save: 5m }\n")).outbox.stateSave == .seconds(300))
        for bad in ["0s", "500ms", "2h", "often"] {
            let e = errors(Self.valid + "\noutbox: { state_save: \(bad) }\n")
            #expect(e.map(\.keyPath) == ["outbox.state_save"], "state_save: \(bad)")
        }
    }

    @Test func busTimingCanBeTuned() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let c = try load(dir.write("c.yaml", Self.valid.replacingOccurrences(of: "port: 1502 } }", with: "port: 1502 }, unit_pause: 200ms, max_backoff: 30s }")))
        #expect(c.buses[0].timing.unitSwitchDelay == .milliseconds(200))
        #expect(c.buses[0].timing.maximumBackoff == .seconds(30))
        let e = errors(Self.valid.replacingOccurrences(of: "port: 1502 } }", with: "port: 1502 }, max_backoff: 10ms }"))
        #expect(e.first?.message == "max_backoff: expected at least 1s")
    }

    @Test func pulseInputsComeFromTheBoard() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let base = Self.valid.replacingOccurrences(of: "board: sim", with: "board: raspberry-pi-4")
        let c = try load(dir.write("c.yaml", base + "\npulses: [ { id: heat-pump, input: s0-2, impulses_per_kwh: 375 } ]\n"))
        #expect(c.pulses.first?.input.line.chip == "gpiochip0" && c.pulses.first?.input.line.line == 27)
        #expect(c.pulses.first?.impulsesPerKilowattHour == 375)
        let e = errors(base + "\npulses: [ { id: heat-pump, input: s0-9, impulses_per_kwh: 375 } ]\n")
        #expect(e.map(\.keyPath) == ["pulses[0].input"])
        #expect(e.first?.message == "board 'raspberry-pi-4' has no S0 input 's0-9' (its inputs: s0-1, s0-2)")
        let dup = errors(base + "\npulses: [ { id: m1, input: s0-1, impulses_per_kwh: 1000 } ]\n")
        #expect(dup.first?.message.contains("duplicate stream id 'm1'") == true)
    }

    @Test func aMissingFileIsNamed() {
        let error = #expect(throws: ConfigErrors.self) { try load("/nonexistent/gw.yaml") }
        #expect(error?.description == "/nonexistent/gw.yaml: no such file")
    }

    @Test func aSyntaxErrorNamesTheLine() {
        let e = errors("gateway: { id: gw1, board: sim\nmeters: []\n")
        #expect(e.count == 1)
        #expect(e.first?.message.hasPrefix("YAML") == true)
        #expect((e.first?.line ?? 0) >= 1)
    }

    @Test func anUnknownKeyIsNamedWithItsPath() {
        let e = errors(Self.valid.replacingOccurrences(of: "unit: 1,", with: "unit: 1, pol: 1s,"))
        #expect(e.map(\.keyPath) == ["meters[0].pol"])
        #expect(e.first?.message.contains("unknown key (did you mean 'poll'?)") == true)
    }

    @Test func aWrongTypeSaysWhatWasExpected() {
        let e = errors(Self.valid.replacingOccurrences(of: "unit: 1,", with: "unit: one,"))
        #expect(e.map(\.keyPath) == ["meters[0].unit"])
        #expect(e.first?.message == "expected an integer, found the scalar 'one'")
    }

    @Test(arguments: ["m/1", "m#1", "m+1"])
    func anIdThatBreaksATopicIsRefused(_ id: String) {
        let e = errors(Self.valid.replacingOccurrences(of: "id: m1", with: "id: \"\(id)\""))
        #expect(e.map(\.keyPath) == ["meters[0].id"])
        #expect(e.first?.message.contains("would break an MQTT topic") == true)
    }

    @Test func aDuplicateMeterIdIsRefused() {
        let e = errors(Self.valid + "\n  - { id: m1, bus: b1, unit: 2, profile: eastron-sdm630 }\n")
        #expect(e.map(\.keyPath) == ["meters[1]"])
        #expect(e.first?.message.contains("duplicate meter id 'm1'") == true)
    }

    @Test func anUnknownBoardListsTheKnownOnes() {
        let e = errors(Self.valid.replacingOccurrences(of: "board: sim", with: "board: raspberry-pi-9"))
        #expect(e.map(\.keyPath) == ["gateway.board"])
        #expect(e.first?.message.contains("unknown board 'raspberry-pi-9'") == true)
        #expect(e.first?.message.contains("sim") == true)
    }

    @Test func unknownBusAndProfileAreNamed() {
        let e = errors(Self.valid.replacingOccurrences(of: "bus: b1", with: "bus: b2").replacingOccurrences(of: "profile: eastron-sdm630", with: "profile: x"))
        #expect(e.map(\.keyPath) == ["meters[0].bus"])
        let p = errors(Self.valid.replacingOccurrences(of: "profile: eastron-sdm630", with: "profile: nope"))
        #expect(p.map(\.keyPath) == ["meters[0].profile"])
    }

    @Test func severalErrorsAreReportedTogether() {
        let e = errors("""
            gateway: { id: "a/b", board: sim, interval: 7s }
            meters:
              - { id: m1, bus: nope, unit: 0, profile: eastron-sdm630 }
            bogus: 1
            """)
        #expect(Set(e.map(\.keyPath)) == ["gateway.id", "gateway.interval", "meters[0].bus", "bogus"])
    }
}

@Suite(.timeLimit(.minutes(5))) struct SystemdNotifierTests {
    @Test func sendsStatesToTheNotifySocket() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let socket = FakeNotifySocket(path: dir.file("notify"))
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "2000000"])
        #expect(notifier.watchdogInterval == .seconds(2))
        try notifier.notify("READY=1\nSTATUS=polling")
        #expect(waitUntil(timeout: 5) { socket.messages == ["READY=1\nSTATUS=polling"] }, "\(socket.messages)")
    }

    @Test func isSilentOutsideSystemdAndIgnoresAnotherProcessesWatchdog() throws {
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"])
        #expect(!notifier.isEnabled)
        #expect(notifier.watchdogInterval == nil)
        try notifier.notify("READY=1")
    }

    @Test func aMissingSocketIsAnErrorNamingIt() {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent/notify"])
        let error = #expect(throws: SystemdNotifyError.self) { try notifier.notify("READY=1") }
        #expect(error?.description.contains("/nonexistent/notify") == true)
    }
}

@Suite(.timeLimit(.minutes(5))) struct BoardFileTests {
    @Test func everyShippedBoardLoads() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: "\(repositoryRoot)/boards").filter { $0.hasSuffix(".yaml") }
        #expect(names.count >= 7)
        for name in names {
            let board = try Board.load(path: "\(repositoryRoot)/boards/\(name)")
            #expect("\(board.id).yaml" == name)
        }
    }
}
