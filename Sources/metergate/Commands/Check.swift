import MQTT
import ArgumentParser
import Gateway
import MeterCore
import Modbus
import Outbox
import Signing

/// `metergate check`: validates a config (with its board and profiles) and prints it resolved.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a config file with its board and meter profiles; print the resolved config or every error.",
        discussion: """
            Exit 0 when the config is valid and its signing key usable (a regular file only its owner can read, \
            of the configured algorithm), 2 with one line per error (file:line:column: key: problem) when not.
            """)

    @OptionGroup var options: ConfigOptions

    @Flag(help: "Do not open the signing key (a config prepared before the key is on the machine).")
    var skipKey = false

    func run() async throws {
        let config = try options.load()
        let key = skipKey ? nil : try ConfigOptions.signingKey(of: config)
        print(ConfigSummary.render(config))
        for advice in config.advisories { print("# advice: \(advice)") }
        if let key {
            print("signing key: \(key.algorithm.rawValue), kid \(key.publicKey.keyID)")
            let announcement = try ConfigOptions.keysAnnouncement(of: config, key: key)
            for statement in announcement.rotations {
                print("rotation: \(statement.previousKeyID) → \(statement.newKey.keyID) (signed, gateway \(statement.gateway))")
            }
        }
    }
}

/// The resolved config as an operator reads it: every default filled in.
enum ConfigSummary {
    static func render(_ c: GatewayConfig) -> String {
        var lines: [String] = []
        lines.append("# \(c.file): OK")
        lines.append("gateway:")
        lines.append("  id: \(c.gateway)")
        lines.append("  board: \(c.board.id)   # \(c.board.name) (\(c.board.file))")
        lines.append("  state_dir: \(c.stateDirectory)")
        lines.append("  interval: \(format(c.interval))")
        lines.append("  log_level: \(c.logLevel)")
        lines.append("buses:")
        for b in c.buses {
            lines.append("  - id: \(b.id)")
            lines.append("    transport: \(b.transport)")
            lines.append("    timeout: \(format(b.responseTimeout))  unit_pause: \(format(b.timing.unitSwitchDelay))  max_backoff: \(format(b.timing.maximumBackoff))")
            if let d = b.directionLine {
                lines.append("    rs485_direction: \(d.chip) line \(d.line), active \(d.activeLow ? "low" : "high") while sending"
                             + "  rts_delay: \(b.rtsDelayMicroseconds.map { "\($0) µs" } ?? "one byte time (libmodbus default)")")
            }
        }
        lines.append("meters:")
        for m in c.meters {
            lines.append("  - id: \(m.id)")
            lines.append("    bus: \(m.bus)  unit: \(m.unit)")
            lines.append("    profile: \(m.profile.id)   # \(m.profile.manufacturer) \(m.profile.model), \(m.profile.fields.count) values")
            lines.append("    poll: \(format(m.pollInterval))  envelope: \(m.envelope.rawValue)\(m.ratedPowerWatts.map { "  rated_power: \($0) W" } ?? "")")
        }
        if !c.rails.sources.isEmpty {
            lines.append("rails:")
            lines.append("  sysfs_root: \(c.rails.sysfsRoot)  nvml: \(c.rails.nvmlLibrary ?? "none")  poll: \(format(c.rails.pollInterval))")
            for r in c.rails.sources {
                lines.append("  - id: \(r.id)  rail: \(r.rail)  envelope: \(r.envelope.rawValue)\(r.ratedPowerWatts.map { "  rated_power: \($0) W" } ?? "")")
            }
        }
        if !c.pulses.isEmpty {
            lines.append("pulses:")
            for p in c.pulses {
                lines.append("  - id: \(p.id)  input: \(p.input.name) (\(p.input.line.chip) line \(p.input.line.line))  \(p.impulsesPerKilowattHour) imp/kWh  minimum_pulse: \(format(p.minimumPulse))")
            }
        }
        lines.append("mqtt:")
        lines.append("  broker: \(c.mqtt.host.map { "\($0):\(c.mqtt.port)" } ?? "none configured (the demo starts a local one)")")
        lines.append("  tls: \(c.mqtt.caFile.map { "CA \($0)" } ?? "off")\(c.mqtt.certFile.map { ", client cert \($0)" } ?? "")")
        lines.append("  inflight: \(c.mqtt.inflightWindow)  keepalive: \(format(c.mqtt.keepalive))  live: \(c.mqtt.live)")
        lines.append("  topics: metergate/v1/\(c.gateway)/<meter>/reading, .../status, .../keys, .../cmd/replay")
        lines.append("signing:")
        lines.append("  key: \(c.signing.keyFile)  algorithm: \(c.signing.algorithm.rawValue)")
        lines.append("outbox:")
        lines.append("  path: \(c.outbox.path)")
        lines.append("  retention: \(format(c.outbox.retention))  quota: \(c.outbox.quotaBytes) bytes  policy: \(c.outbox.quotaPolicy.rawValue)")
        lines.append("metrics:")
        lines.append(c.metrics.enabled ? "  listen: \(c.metrics.host):\(c.metrics.port)  (/metrics, /health)  backlog_alarm: \(c.metrics.backlogAlarm)" : "  enabled: false")
        lines.append("profiles: \(c.profileDirectories.joined(separator: ", "))")
        return lines.joined(separator: "\n")
    }

    static func format(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms % 86_400_000 == 0 && ms > 0 { return "\(ms / 86_400_000)d" }
        if ms % 3_600_000 == 0 && ms > 0 { return "\(ms / 3_600_000)h" }
        if ms % 60_000 == 0 && ms > 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}
