import ConfigFile

/// How an outbox keeps and bounds its records: the config's `outbox:` section, read here next to the store it sets.
public struct OutboxConfiguration: Sendable, Hashable {
    /// The database file (`path`; default `<state_dir>/outbox.sqlite`).
    public var path: String
    /// How long delivered records stay for replays.
    public var retention: Duration
    /// The byte quota over all records (see ``OutboxRecord/quotaBytes``).
    public var quotaBytes: Int64
    public var quotaPolicy: OutboxQuotaPolicy
    /// How often the gateway saves into the outbox the state of streams whose energy lives only there (power rails
    /// it integrates) when no interval closed (`state_save`); counters are saved with their records.
    public var stateSave: Duration
    /// The sink whose delivery state the store's claims and delivered marks keep (`pending` and `deliveries` rows);
    /// every record appended is owed to it. Not read from the config: the gateway has one sink, MQTT.
    public var sink: String

    public init(path: String = "outbox.sqlite", retention: Duration = .seconds(30 * 86_400), quotaBytes: Int64 = 1 << 30,
                quotaPolicy: OutboxQuotaPolicy = .keep, stateSave: Duration = .seconds(10), sink: String = "mqtt") {
        self.path = path
        self.retention = retention
        self.quotaBytes = quotaBytes
        self.quotaPolicy = quotaPolicy
        self.stateSave = stateSave
        self.sink = sink
    }

    /// Reads the `outbox:` section (`path`, `retention`, `quota`, `quota_policy`, `state_save`); absent keys keep
    /// their defaults. `resolve` makes a relative path absolute (against the config file's folder).
    public static func read(_ node: ConfigNode?, stateDirectory: String, resolve: (String) -> String) throws(ConfigError) -> OutboxConfiguration {
        var config = OutboxConfiguration(path: "\(stateDirectory)/outbox.sqlite")
        guard let node else { return config }
        let m = try node.mapping()
        if let p = try m.optional("path")?.string() { config.path = resolve(p) }
        if let r = m.optional("retention") { config.retention = try r.longDuration() }
        if let q = m.optional("quota") { config.quotaBytes = try q.byteSize() }
        config.quotaPolicy = try m.optional("quota_policy")?.oneOf(OutboxQuotaPolicy.self) ?? .keep
        if let node = m.optional("state_save") {
            let every = try node.duration()
            guard every >= .seconds(1), every <= .seconds(3600) else {
                throw node.error("expected how often the accounting state is saved, from 1s to 1h (default 10s)")
            }
            config.stateSave = every
        }
        try m.finish()
        return config
    }
}
