import ConfigFile
import MeterCore
import MeterGateTesting
import Modbus
import Synchronization
import TestSupport
import Testing

/// Where a meter names itself, and when the poller asks: the profile's identity registers, read at the first
/// answer, again when the counter went backwards, after a failure, and on the refresh period.
@Suite(.timeLimit(.minutes(2))) struct MeterIdentityTests {
    static let profile = try! MeterProfile.load(path: "\(repositoryRoot)/profiles/eastron-sdm630.yaml")

    /// An SDM630 whose serial and import counter the test sets; it can refuse its serial register or fall silent.
    final class Meter: ModbusRequestHandler, Sendable {
        struct State {
            var serial: UInt32 = 12_345_678; var importKWh: Float = 1000; var refuseSerial = false; var silent = false; var serialSilent = false
            var serialReads = 0
        }
        let state = Mutex(State())

        func respond(to request: ModbusServerRequest) -> ModbusServerResponse {
            state.withLock { s in
                if s.silent { return .noAnswer }
                if request.functionCode == 3 && request.address == 0xFC00 {
                    s.serialReads += 1
                    if s.serialSilent { return .noAnswer }
                    return s.refuseSerial ? .exception(.illegalDataAddress) : .values([UInt16(s.serial >> 16), UInt16(s.serial & 0xFFFF)])
                }
                guard request.functionCode == 4 else { return .exception(.illegalDataAddress) }
                return .values((0..<request.count).map { i -> UInt16 in
                    let register = request.address + i
                    guard register == 0x48 || register == 0x49 else { return 0 }
                    let bits = s.importKWh.bitPattern
                    return register == 0x48 ? UInt16(bits >> 16) : UInt16(bits & 0xFFFF)
                })
            }
        }
    }

    @Test func theShippedEastronProfilesNameTheirSerialRegister() throws {
        for name in ["eastron-sdm630", "eastron-sdm120", "eastron-sdm72"] {
            let profile = try MeterProfile.load(path: "\(repositoryRoot)/profiles/\(name).yaml")
            let identity = try #require(profile.identity, "\(name)")
            #expect(identity.space == .holding && identity.address == 0xFC00 && identity.encoding == .integer(.u32, .bigEndian), "\(name)")
            #expect(profile.offersIdentity)
        }
    }

    @Test func aProfileIdentitySectionIsCheckedLikeTheRest() throws {
        func parse(_ identity: String) throws(ConfigError) -> MeterProfile {
            try MeterProfile.parse(try ConfigNode.parse("""
                profile: t
                manufacturer: T
                model: M
                values: [{ quantity: energy_import, address: 0, type: u32, unit: Wh }]
                identity: \(identity)
                """, file: "t.yaml"))
        }
        #expect(try parse("{ serial: { address: 10, type: string, registers: 8 } }").identity?.encoding == .text(registers: 8))
        for bad in ["{ serial: { address: 10, type: float32 } }", "{ serial: { address: 65535, type: u32 } }", "{ serial: { type: u32 } }",
                    "{ serial: { address: 1, type: u16, colour: red } }", "{ model: { address: 1, type: u16 } }"] {
            #expect(throws: ConfigError.self, "\(bad)") { try parse(bad) }
        }
    }

    @Test func aSerialRegisterIsReadRefusedOrEmpty() async throws {
        let meter = Meter()
        let reader = InMemoryRegisterReader(meter)
        #expect(try await Self.profile.readIdentity(unit: 1, from: reader) == .identified(MeterIdentity(manufacturer: "Eastron", model: "SDM630", serial: "12345678")!))
        #expect(MeterIdentity(manufacturer: "Eastron", model: "SDM630", serial: "12345678")?.sourceID == "eastron:SDM630:12345678")
        meter.state.withLock { $0.refuseSerial = true }
        guard case .notOffered(let why) = try await Self.profile.readIdentity(unit: 1, from: reader) else { Issue.record("a refused register is no identity"); return }
        #expect(why.contains("refused"))
        meter.state.withLock { $0.refuseSerial = false; $0.serial = 0xFFFF_FFFF }
        guard case .notOffered = try await Self.profile.readIdentity(unit: 1, from: reader) else { Issue.record("all ones is no serial"); return }
        meter.state.withLock { $0.silent = true }
        await #expect(throws: ModbusError.self) { try await Self.profile.readIdentity(unit: 1, from: reader) }
    }

    /// What a meter reports is cleaned before it names a record: no `|`, `:` or control bytes, at most 32 characters.
    @Test func aHostileIdentityIsCleaned() throws {
        let identity = try #require(MeterIdentity(manufacturer: "Ev|l Co", model: "M:1\u{01}", serial: " " + String(repeating: "9", count: 40) + "\0"))
        #expect(identity.sourceID == "ev-l-co:M-1-:" + String(repeating: "9", count: 32))
        #expect(MeterIdentity(manufacturer: "A", model: "B", serial: " \0 ") == nil)
        #expect(MeterIdentity.isValidSerial("SN-1.2_3") && !MeterIdentity.isValidSerial("a b") && !MeterIdentity.isValidSerial(""))
    }

    /// The poller reads the identity with the first answer, not with every poll; again when the counter went
    /// backwards (another meter may answer) and after the meter failed.
    @Test func thePollerReadsTheIdentityWhenItMayHaveChanged() async throws {
        let meter = Meter()
        let id = try MeterID(validating: "m1")
        let poller = BusPoller(meters: [PolledMeter(id: id, unit: 1, profile: Self.profile, period: .milliseconds(100), quantities: [.energyImport],
                                                    identityRefresh: .seconds(3600))],
                               reader: InMemoryRegisterReader(meter), timing: BusTiming(maximumBackoff: .milliseconds(100)))
        let events = Mutex<[PollEvent]>([])
        let samples = { events.withLock { $0.compactMap { if case .sample(_, _, _, _, let identity) = $0 { Optional(identity) } else { nil } } } }
        let failures = { events.withLock { $0.filter { if case .failure = $0 { true } else { false } }.count } }
        let task = poller.start { event in events.withLock { $0.append(event) } }
        defer { task.cancel() }
        func waitFor(_ what: String, _ condition: () -> Bool) async throws {
            let deadline = ContinuousClock.now + .seconds(20)
            while !condition() {
                guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        try await waitFor("three samples") { samples().count >= 3 }
        let first = samples()
        #expect(first[0] == .identified(MeterIdentity(manufacturer: "Eastron", model: "SDM630", serial: "12345678")!))
        #expect(first.dropFirst().allSatisfy { $0 == nil }, "read once, not with every poll: \(first)")
        // Another meter with a lower counter: its identity comes with its first sample.
        meter.state.withLock { $0.serial = 87_654_321; $0.importKWh = 5 }
        try await waitFor("the new identity") { samples().contains(.identified(MeterIdentity(manufacturer: "Eastron", model: "SDM630", serial: "87654321")!)) }
        let seen = samples()
        let swapAt = try #require(seen.firstIndex { $0 == .identified(MeterIdentity(manufacturer: "Eastron", model: "SDM630", serial: "87654321")!) })
        #expect(seen[1..<swapAt].allSatisfy { $0 == nil }, "no identity read between: \(seen)")
        // A silence, then the meter answers again: its identity is read again.
        let before = meter.state.withLock { $0.serialReads }
        meter.state.withLock { $0.silent = true }
        try await waitFor("a failure") { failures() >= 1 }
        let count = samples().count
        meter.state.withLock { $0.silent = false }
        try await waitFor("an answer after the failure") { samples().count > count }
        #expect(samples()[count] != nil, "the first answer after a failure carries the identity")
        #expect(meter.state.withLock { $0.serialReads } == before + 1)
    }

    /// A meter that answers its values but not its serial register: its samples still go out (without identity),
    /// and the register is not asked with every poll.
    @Test func aMeterThatDoesNotAnswerItsSerialStillHasItsSamples() async throws {
        let meter = Meter()
        meter.state.withLock { $0.serialSilent = true }
        let poller = BusPoller(meters: [PolledMeter(id: try MeterID(validating: "m1"), unit: 1, profile: Self.profile, period: .milliseconds(50),
                                                    quantities: [.energyImport])],
                               reader: InMemoryRegisterReader(meter), timing: BusTiming())
        let samples = Atomic<Int>(0)
        let task = poller.start { event in if case .sample = event { samples.add(1, ordering: .relaxed) } }
        let deadline = ContinuousClock.now + .seconds(20)
        while samples.load(ordering: .relaxed) < 10, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        task.cancel()
        await task.value
        #expect(samples.load(ordering: .relaxed) >= 10)
        #expect(meter.state.withLock { $0.serialReads } == 1, "retried after 30 s, not with every poll")
    }
}
