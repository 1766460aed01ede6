import ConfigFile
import MeterCore
import Modbus
import Signing

/// One revenue meter on a bus.
public struct MeterConfig: Sendable {
    public var id: MeterID
    public var bus: Identifier
    public var unit: Int
    public var profile: MeterProfile
    public var pollInterval: Duration
    /// The meter's rated maximum power (W), used to flag implausible counter jumps.
    public var ratedPowerWatts: Double?
    /// The bound a counter increase is judged by: `rated_power`, else the profile's limits.
    public var plausibleMaximumWatts: Double? { ratedPowerWatts ?? profile.limits?.maximumPowerWatts }
    /// The envelope signed records of this meter use.
    public var envelope: RecordEnvelope
    /// The serial number commissioned for this position (`serial:`): another meter answering is an alarm, and a
    /// meter without identity registers is named by it.
    public var serial: String? = nil

    /// How the bus poller reads this meter: only the values its records are made of
    /// (``ReadingPipeline/sampledQuantities``), so a poll asks for a few registers, not the profile's every value.
    public var polled: PolledMeter {
        PolledMeter(id: id, unit: unit, profile: profile, period: pollInterval, quantities: ReadingPipeline.sampledQuantities)
    }
}

extension ConfigReader {
    static func meter(_ node: ConfigNode, buses: [BusConfig], profiles: ProfileLibrary) throws(ConfigError) -> MeterConfig {
        let m = try node.mapping()
        let id = try identifier(m.required("id", expected: "the meter id (one MQTT topic level)"))
        let busNode = try m.required("bus", expected: "the id of a bus under buses:")
        let bus = try identifier(busNode)
        guard buses.contains(where: { $0.id == bus }) else {
            let known = buses.map(\.id.rawValue).joined(separator: ", ")
            throw busNode.error("no bus with id '\(bus)' (buses: \(known.isEmpty ? "none" : known))")
        }
        let unit = try m.required("unit", expected: "the Modbus unit id, 1…247").int(in: 1...247)
        let profileNode = try m.required("profile", expected: "a meter profile id")
        let profileID = try profileNode.string()
        guard let profile = profiles[profileID] else {
            throw profileNode.error("no meter profile '\(profileID)' (known: \(profiles.profiles.keys.sorted().joined(separator: ", ")))")
        }
        let poll = try m.optional("poll")?.duration() ?? .seconds(1)
        guard poll >= .milliseconds(100) else { throw node.error("poll: expected at least 100ms") }
        let rated = try m.optional("rated_power")?.double()
        let envelope = try m.optional("envelope")?.oneOf(RecordEnvelope.self) ?? .jws
        var serial: String?
        if let node = m.optional("serial") {
            let text = try node.string()
            guard MeterIdentity.isValidSerial(text) else {
                throw node.error("serial: expected 1 to \(MeterIdentity.maximumPartLength) of A-Z a-z 0-9 . _ - (as the meter reports it), found '\(text)'")
            }
            serial = text
        }
        try m.finish()
        return MeterConfig(id: id, bus: bus, unit: unit, profile: profile, pollInterval: poll, ratedPowerWatts: rated, envelope: envelope, serial: serial)
    }
}
