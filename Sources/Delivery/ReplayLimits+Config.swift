import ConfigFile

extension ReplayLimits {
    /// `mqtt.replay`: `{ max_records: 10000, budget_per_minute: 60000, queue: 64 }`, the bounds on what requests
    /// arriving on `cmd/replay` may make the gateway re-publish.
    public static func read(_ node: ConfigNode?) throws(ConfigError) -> ReplayLimits {
        var limits = ReplayLimits()
        guard let node else { return limits }
        let m = try node.mapping()
        if let n = m.optional("max_records") { limits.maximumRecordsPerRequest = UInt64(try n.int(in: 1...10_000_000)) }
        if let n = m.optional("budget_per_minute") { limits.budgetPerMinute = UInt64(try n.int(in: 1...100_000_000)) }
        if let n = m.optional("queue") { limits.maximumQueued = try n.int(in: 1...10_000) }
        try m.finish()
        return limits
    }
}
