import Logging
import Modbus
import Synchronization
import ServiceLifecycle
import UnixSignals

/// SIGHUP: re-reads the config file. What can change safely while running (the log level) is applied;
/// anything else is reported, setting by setting, with the restart that applies it. A config that no longer
/// validates is refused and the running one stays.
public struct ReloadService: Service {
    let running: GatewayConfig
    /// The log level in force: the start-up config's until a reload changes it (and back again).
    private let appliedLogLevel: AppliedLevel
    let load: @Sendable () throws(ConfigErrorsDescription) -> GatewayConfig
    let logger: Logger

    /// The errors of a failed reload, already rendered.
    public struct ConfigErrorsDescription: Error { public var text: String; public init(_ text: String) { self.text = text } }

    public init(running: GatewayConfig, logger: Logger, load: @escaping @Sendable () throws(ConfigErrorsDescription) -> GatewayConfig) {
        self.running = running
        self.appliedLogLevel = AppliedLevel(running.logLevel)
        self.logger = logger
        self.load = load
    }

    public func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            reload()
        }
    }

    /// One reload; returns the settings that need a restart (empty when everything was applied).
    @discardableResult
    public func reload() -> [String] {
        let next: GatewayConfig
        do { next = try load() } catch {
            logger.error("SIGHUP: the config no longer validates; keeping the running one:\n\(error.text)")
            return ["config invalid"]
        }
        if let level = Logger.Level(rawValue: next.logLevel), appliedLogLevel.value.withLock({ $0 }) != next.logLevel {
            GatewayLogHandler.processLevel.withLock { $0 = level }
            appliedLogLevel.value.withLock { $0 = next.logLevel }
            logger.notice("SIGHUP: log level is now \(level)")
        }
        let restart = Self.settingsNeedingRestart(from: running, to: next)
        if restart.isEmpty {
            logger.notice("SIGHUP: config reloaded; nothing else changed")
        } else {
            logger.warning("SIGHUP: \(restart.joined(separator: ", ")) changed; these apply after a restart (systemctl restart metergate)")
        }
        return restart
    }

    /// The settings that differ and cannot be changed without restarting the pipeline.
    static func settingsNeedingRestart(from a: GatewayConfig, to b: GatewayConfig) -> [String] {
        var changed: [String] = []
        if a.gateway != b.gateway { changed.append("gateway.id") }
        if a.board != b.board { changed.append("gateway.board") }
        if a.stateDirectory != b.stateDirectory { changed.append("gateway.state_dir") }
        if a.interval != b.interval { changed.append("gateway.interval") }
        if a.buses != b.buses { changed.append("buses") }
        if a.meters.map(\.fingerprint) != b.meters.map(\.fingerprint) { changed.append("meters") }
        if a.mqtt != b.mqtt { changed.append("mqtt") }
        if a.signing != b.signing { changed.append("signing") }
        if a.outbox != b.outbox { changed.append("outbox") }
        if a.metrics != b.metrics { changed.append("metrics") }
        return changed
    }
}

extension MeterConfig {
    /// What identifies a meter's setup, for change detection.
    var fingerprint: String {
        "\(id)|\(bus)|\(unit)|\(profile.id)|\(profile.fields.count)|\(pollInterval)|\(ratedPowerWatts ?? -1)|\(envelope)"
    }
}

/// The log level a reload last applied, shared by the copies of the service value.
final class AppliedLevel: Sendable {
    let value: Mutex<String>
    init(_ level: String) { value = Mutex(level) }
}
