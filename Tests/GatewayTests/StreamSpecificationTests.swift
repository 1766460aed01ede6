import Accounting
import Foundation
import Gateway
import Logging
import MeterCore
import Outbox
import Signing
import Synchronization
import TestSupport
import Testing

/// Source kinds describe their streams to the pipeline; the pipeline builds and restores every kind alike.
@Suite(.timeLimit(.minutes(5))) struct StreamSpecificationTests {
    @Test func aMeterDescribesItsStreamAsAnMWhCounterNamingProfileUnitAndBus() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let config = try GatewayConfig.load(path: dir.write("c.yaml", """
            gateway: { id: gw1, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            buses:
              - { id: b1, tcp: { host: 127.0.0.1, port: 1502 } }
            meters:
              - { id: m1, bus: b1, unit: 7, profile: eastron-sdm630, poll: 10s }
            """), boardDirectories: ["\(repositoryRoot)/boards"], profileDirectories: ["\(repositoryRoot)/profiles"])
        let specifications = config.streamSpecifications(grid: try IntervalGrid(periodMillis: 1000), rails: [])
        #expect(specifications.map(\.id.rawValue) == ["m1"])
        let m1 = try #require(specifications.first)
        #expect(m1.sourceID == "eastron-sdm630 unit 7 on b1")
        guard case .counter(let accounting) = m1.accounting else {
            Issue.record("a meter is accounted as a counter")
            return
        }
        #expect(accounting.scale == .milliwattHours && accounting.hasExportCounter)
        #expect(accounting.settings.maximumGapNanos == 50_000_000_000, "five polls of 10 s")
    }

    /// Saved state that no longer fits is named in the log and the stream starts afresh, for every kind (pulse
    /// inputs and rails used to drop it without a word).
    @Test func stateThatNoLongerFitsIsLoggedAndEveryKindStartsAfresh() async throws {
        let grid = try IntervalGrid(periodMillis: 1000)
        let pulse = try MeterID(validating: "p1"), rail = try MeterID(validating: "r1")
        let specifications = [
            StreamSpecification(id: pulse, sourceID: "S0 test", envelope: .jws, accounting: .counter(CounterAccountant.Configuration(
                settings: SourceSettings(meter: pulse, source: .pulse, grid: grid), scale: .impulses(perKilowattHour: 1000), ratedPowerWatts: nil))),
            StreamSpecification(id: rail, sourceID: "hwmon test", envelope: .jws,
                                accounting: .power(SourceSettings(meter: rail, source: .hwmon, grid: grid))),
        ]
        let store = InMemoryOutbox()
        _ = try await store.append([], saving: ["accounting/p1": Array("{\"not\":\"a snapshot\"}".utf8), "accounting/r1": [0xFF, 0x00]])
        let lines = LogLines()
        let logger = Logger(label: "test") { _ in lines }
        _ = try await ReadingPipeline(gateway: try GatewayID(validating: "gw1"), streams: specifications, key: SigningKey.generate(.eddsa),
                                      selfCheck: true, stateSave: .seconds(10), store: store, bootID: nil, logger: logger) {}
        let warnings = lines.all.filter { $0.contains("does not fit the config") }
        #expect(warnings.count == 2, "\(lines.all)")
        #expect(warnings.contains { $0.contains("meter=p1") } && warnings.contains { $0.contains("meter=r1") })
    }
}

/// Log lines as text, for tests that check what was logged.
final class LogLines: LogHandler, @unchecked Sendable {
    // Safe: the lines are behind the mutex; the handler's own settings are set once, before use.
    private let lines = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        lines.withLock { $0.append("\(event.level) \(event.message) \(fields)") }
    }

    var all: [String] { lines.withLock { $0 } }
}
