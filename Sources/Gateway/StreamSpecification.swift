import Accounting
import MeterCore
import Modbus
import PowerRails
import Signing

/// One stream of signed readings, as a source kind describes it to the pipeline: its id, what the records name
/// as its source, its envelope, and how it is accounted. Each source kind turns its config section into these
/// (``GatewayConfig/streamSpecifications(grid:rails:)``); the pipeline builds every stream from them alike.
public struct StreamSpecification: Sendable {
    /// How a stream turns readings into intervals.
    public enum Accounting: Sendable {
        /// A counter (meter registers, S0 impulses, energy rails): exact differences, rollover and reset.
        case counter(CounterAccountant.Configuration)
        /// Integrated power (power rails).
        case power(SourceSettings)
    }

    /// How a source that can name itself is identified (Modbus meters): its make, and the serial commissioned.
    public struct Identity: Sendable, Hashable {
        public var manufacturer: String
        public var model: String
        /// The config's `serial:`: another serial answering is an alarm.
        public var commissionedSerial: String?

        public init(manufacturer: String, model: String, commissionedSerial: String?) {
            self.manufacturer = manufacturer
            self.model = model
            self.commissionedSerial = commissionedSerial
        }

        /// The identity the config states, for records of a meter that names none itself.
        public var configured: MeterIdentity? {
            commissionedSerial.flatMap { MeterIdentity(manufacturer: manufacturer, model: model, serial: $0) }
        }
    }

    public var id: MeterID
    /// What each record names as the stream's source (``RecordSigner``'s source id) while no identity is known:
    /// a bus position, a rail, an input.
    public var sourceID: String
    public var envelope: RecordEnvelope
    public var accounting: Accounting
    /// Nil: the source cannot name itself; its records carry ``sourceID``.
    public var identity: Identity?

    public init(id: MeterID, sourceID: String, envelope: RecordEnvelope, accounting: Accounting, identity: Identity? = nil) {
        self.id = id
        self.sourceID = sourceID
        self.envelope = envelope
        self.accounting = accounting
        self.identity = identity
    }
}

extension GatewayConfig {
    /// Every stream this config makes: its meters, pulse inputs and the rails found on this machine.
    public func streamSpecifications(grid: IntervalGrid, rails: [(source: RailsConfig.Source, rail: RailDescription)]) -> [StreamSpecification] {
        meters.map { $0.streamSpecification(grid: grid) } + pulses.map { $0.streamSpecification(grid: grid) }
            + rails.map { self.rails.streamSpecification(source: $0.source, rail: $0.rail, grid: grid) }
    }
}

/// The longest silence still accounted as one interval's change: five polls, and never under 30 s.
private func maximumGapNanos(poll: Duration) -> Int64 {
    max(Int64(5 * ReadingPipeline.millis(poll)) * 1_000_000, 30_000_000_000)
}

extension MeterConfig {
    /// A Modbus meter: its import register as a counter in mWh, wrapping at the register's width.
    public func streamSpecification(grid: IntervalGrid) -> StreamSpecification {
        let field = profile.field(.energyImport)
        let accounting = CounterAccountant.Configuration(
            settings: SourceSettings(meter: id, source: .modbus, grid: grid, maximumGapNanos: maximumGapNanos(poll: pollInterval)),
            scale: .milliwattHours, range: ReadingPipeline.range(of: field), hasExportCounter: profile.field(.energyExport) != nil,
            ratedPowerWatts: plausibleMaximumWatts)
        return StreamSpecification(id: id, sourceID: "\(profile.id) unit \(unit) on \(bus)", envelope: envelope, accounting: .counter(accounting),
                                   identity: .init(manufacturer: profile.manufacturer, model: profile.model, commissionedSerial: serial))
    }
}

extension PulseConfig {
    /// An S0 input: a counter of impulses, exact at any pulse constant.
    public func streamSpecification(grid: IntervalGrid) -> StreamSpecification {
        let accounting = CounterAccountant.Configuration(settings: SourceSettings(meter: id, source: .pulse, grid: grid),
                                                         scale: .impulses(perKilowattHour: impulsesPerKilowattHour),
                                                         ratedPowerWatts: ratedPowerWatts)
        return StreamSpecification(id: id, sourceID: "S0 \(input.name) \(input.line.chip):\(input.line.line) \(impulsesPerKilowattHour) imp/kWh",
                                   envelope: envelope, accounting: .counter(accounting))
    }
}

extension RailsConfig {
    /// A rail: energy counters (µJ; RAPL wraps at its range, NVML restarts from zero after a driver reload) are
    /// accounted as counters, power rails (µW) by integration.
    public func streamSpecification(source: Source, rail: RailDescription, grid: IntervalGrid) -> StreamSpecification {
        let settings = SourceSettings(meter: source.id, source: rail.source, grid: grid, maximumGapNanos: maximumGapNanos(poll: pollInterval))
        let isNVML: Bool = { if case .nvml = rail.method { return true } else { return false } }()
        guard rail.isEnergyCounter || isNVML else {
            return StreamSpecification(id: source.id, sourceID: rail.id, envelope: source.envelope, accounting: .power(settings))
        }
        var range = CounterRange.bits(64)
        if case .raplEnergy(_, let wrap?) = rail.method { range = .modulus(wrap) }
        let configuration = CounterAccountant.Configuration(settings: settings, scale: .microjoules, range: range,
                                                            ratedPowerWatts: source.ratedPowerWatts, afterReset: isNVML ? .countFromZero : .rebase)
        return StreamSpecification(id: source.id, sourceID: rail.id, envelope: source.envelope, accounting: .counter(configuration))
    }
}
