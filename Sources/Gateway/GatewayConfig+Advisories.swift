import MQTT
import ConfigFile
import Foundation
import Modbus

extension GatewayConfig {
    /// Valid settings an operator should reconsider, one line each (`check` prints them, `run` logs them).
    public var advisories: [String] {
        var advice = meters.filter { $0.ratedPowerWatts == nil }.map { m in
            if let limits = m.profile.limits {
                return "meter \(m.id) has no rated_power: increases are bounded by what a \(m.profile.model) can measure, "
                    + "\(Int(limits.maximumPowerWatts)) W (\(limits.phases) × \(Int(limits.nominalVoltage)) V × \(Int(limits.maximumCurrentAmps)) A, "
                    + "its profile's limits); set rated_power to the most the meter's circuit can draw for a tighter bound"
            }
            return "meter \(m.id) has no rated_power and its profile no limits: a counter jump (a replaced meter whose counter starts "
                + "above the old one's) cannot be told from consumption and would be paid; set it to the most the meter's circuit can draw"
        }
        if meters.isEmpty && pulses.isEmpty && rails.sources.isEmpty {
            advice.append("no sources: meters:, pulses: and rails: are all empty, so the gateway signs nothing")
        }
        if !signing.selfCheck {
            advice.append("signing.self_check is false: a signature damaged while it is made (a hardware fault) is stored and "
                          + "published, and settlement rejects the reading; keep it on unless the CPU cannot afford one verify per record")
        }
        if let host = mqtt.host, mqtt.caFile == nil, !Self.isLoopback(host) {
            advice.append("mqtt: plaintext MQTT to \(host), which is not this machine: anyone on the path can read the readings and "
                          + "the password, and inject replay commands; give mqtt.ca_file (TLS, port 8883) and a client certificate")
        }
        if let file = mqtt.passwordFile {
            var info = stat()
            if stat(file, &info) == 0, info.st_mode & 0o077 != 0 {
                advice.append("mqtt.password_file \(file) can be read by its group or others (mode \(String(info.st_mode & 0o777, radix: 8))): "
                              + "chmod 600 it")
            }
        }
        return advice
    }

    /// `localhost`, 127.0.0.0/8 or ::1.
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}
