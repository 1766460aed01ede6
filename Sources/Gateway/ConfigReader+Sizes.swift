import ConfigFile
import Foundation

extension ConfigReader {
    static func metrics(_ node: ConfigNode?) throws(ConfigError) -> MetricsConfig {
        var config = MetricsConfig(enabled: true, host: "127.0.0.1", port: 9464, backlogAlarm: 10_000)
        guard let node else { return config }
        let m = try node.mapping()
        config.enabled = try m.optional("enabled")?.bool() ?? true
        if let listen = m.optional("listen") {
            let text = try listen.string()
            let parts = text.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]), (0...65535).contains(port) else {
                throw listen.error("expected HOST:PORT with an IPv4 address, e.g. 127.0.0.1:9464, found '\(text)'")
            }
            config.host = String(parts[0])
            config.port = port
        }
        config.backlogAlarm = try m.optional("backlog_alarm")?.int(in: 1...Int(Int32.max)) ?? 10_000
        try m.finish()
        return config
    }
}
