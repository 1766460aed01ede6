import Delivery
import Foundation
import Logging
import MQTT
import MeterCore
import Metrics
import Modbus
import Outbox
import PowerRails
import Prometheus
import ServiceLifecycle
import Signing
import UnixSignals

/// Why the gateway could not be built from its config. ``isConfigError``: the config or a file it names is wrong
/// (`metergate run` exits 2); otherwise the machine refused something (exit 1).
public struct GatewayStartError: Error, CustomStringConvertible {
    public let description: String
    public let isConfigError: Bool

    static func config(_ text: String) -> GatewayStartError { GatewayStartError(description: text, isConfigError: true) }
    static func run(_ text: String) -> GatewayStartError { GatewayStartError(description: text, isConfigError: false) }
}

/// The whole gateway built from its config: sources → accounting → signing → SQLite outbox → delivery to MQTT,
/// with health, metrics, systemd and reload around them, as services that stop in reverse order. `metergate run`
/// builds one and runs it; the end-to-end benchmark and in-process tests use the same wiring.
public struct GatewayApplication: Sendable {
    /// What the process around the gateway decides (not the config).
    public struct Settings: Sendable {
        /// How long pending records may drain to the broker at shutdown.
        public var drainBound: Duration = .seconds(5)
        /// Once started, page out the executable's pages only start-up read.
        public var pageOutAfterStart = false
        /// This boot's id (`/proc/sys/kernel/random/boot_id`): a restart within one boot is told from a reboot.
        public var bootID: String? = GatewayApplication.currentBootID()
        /// The Prometheus registry behind `/metrics` (the one the process's MetricsSystem reports to).
        public var registry = PrometheusCollectorRegistry()
        /// Reads and checks the config again, for SIGHUP (nil: the running config is kept).
        public var reload: (@Sendable () throws(ReloadService.ConfigErrorsDescription) -> GatewayConfig)?
        /// The signals that start a graceful shutdown (empty for a gateway run inside a test).
        public var shutdownSignals: [UnixSignal] = [.sigterm, .sigint]

        public init() {}
    }

    public let config: GatewayConfig
    public let store: SQLiteOutbox
    public let client: MQTTClient
    public let publisher: OutboxPublisher
    public let pipeline: ReadingPipeline
    public let monitor: GatewayMonitor
    /// The `/metrics` and `/health` endpoint, when the config enables it.
    public let endpoint: MetricsEndpoint?
    let services: [ServiceGroupConfiguration.ServiceConfiguration]
    let settings: Settings
    let logger: Logger

    /// Opens every configured bus. One that cannot be opened (its RS-485 direction GPIO missing or busy) stops the
    /// start, naming the chip, the line, the C call and errno: `metergate run` does this first of all.
    public static func openBuses(_ config: GatewayConfig) throws(GatewayStartError) -> [Identifier: ModbusConnection] {
        do { return try PollService.openConnections(config) } catch { throw .run("\(config.file): \(error)") }
    }

    /// Opens the outbox, connects nothing yet, and wires every stage. `keys` is the retained keys document
    /// (the signing key, earlier keys and rotation statements); `password` the broker password, if any;
    /// `buses` what ``openBuses(_:)`` opened (nil: opened here).
    public static func make(config: GatewayConfig, key: SigningKey, keys: [UInt8], password: String?,
                            buses: [Identifier: ModbusConnection]? = nil, settings: Settings = Settings(),
                            logger: Logger = Logger(label: "metergate")) async throws(GatewayStartError) -> GatewayApplication {
        let connections: [Identifier: ModbusConnection]
        if let buses { connections = buses } else { connections = try openBuses(config) }
        do {
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .run("cannot create the state directory \(config.stateDirectory): \(error.localizedDescription)")
        }
        guard let host = config.mqtt.host else {
            throw .config("\(config.file): mqtt.host: no broker configured; the gateway needs one to publish to")
        }
        let store: SQLiteOutbox
        do {
            store = try await SQLiteOutbox.open(path: config.outbox.path, configuration: config.outbox,
                                                logger: Logger(label: "outbox"))
        } catch {
            throw .run("cannot open the outbox \(config.outbox.path): \(error)")
        }
        if let moved = store.openReport.quarantined { logger.error("the outbox was damaged and moved aside: \(moved)") }
        logger.info("outbox open", metadata: ["path": "\(config.outbox.path)", "epoch": "\(store.epoch)", "created": "\(store.openReport.created)"])

        // MQTT: status online/offline (retained, last will), public keys retained, records QoS 1.
        let topics = MeterGateTopics(gateway: config.gateway.rawValue)
        let client = MQTTClient(configuration: config.mqtt.clientConfiguration(host: host, gateway: config.gateway.rawValue, password: password,
                                                                               topics: topics, keys: keys), logger: Logger(label: "mqtt"))
        let knownSources = Set(config.meters.map(\.id.rawValue) + config.rails.sources.map(\.id.rawValue) + config.pulses.map(\.id.rawValue))
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics),
                                        configuration: .init(window: config.mqtt.inflightWindow, replayLimits: config.mqtt.replay,
                                                             knownMeters: knownSources),
                                        logger: Logger(label: "publisher"))
        let rails = try await findRails(config)

        // Accounting and signing, fed by the pollers.
        let pipeline: ReadingPipeline
        do {
            pipeline = try await ReadingPipeline(config: config, key: key, store: store, bootID: settings.bootID, logger: Logger(label: "pipeline"),
                                                 rails: rails.map { ($0.source, $0.rail) }, recoveries: store.openReport.recoveries) {
                publisher.recordsAppended()
            }
        } catch {
            throw .config("cannot set up signing and accounting: \(error)")
        }
        let wiring = SourceWiring(config: config, rails: rails, pipeline: pipeline,
                                  live: config.mqtt.live ? LiveValues(client: client, topics: topics) : nil)
        let monitor = GatewayMonitor(heartbeat: wiring.sampleBeat, staleAfter: wiring.stale, backlogAlarm: config.metrics.backlogAlarm,
                                     meterCount: config.meters.count + rails.count + config.pulses.count, liveness: wiring.liveness)
        var endpoint: MetricsEndpoint?
        if config.metrics.enabled {
            do {
                endpoint = try MetricsEndpoint(host: config.metrics.host, port: config.metrics.port, registry: settings.registry) { monitor.health() }
                logger.info("metrics on http://\(config.metrics.host):\(endpoint!.port)/metrics and /health")
            } catch {
                throw .run("\(error) (set metrics.listen to a free port, or metrics.enabled: false)")
            }
        }

        // Services stop in reverse order: systemd notifier, reload, monitor, sources (no more samples), pipeline
        // (saves accounting state), maintenance, publisher (drains within the bound), then the store closes.
        typealias Entry = ServiceGroupConfiguration.ServiceConfiguration
        // Named by type: the default name is the service's whole `description` (for the poller, the reload
        // service: the entire config with every meter's profile, over a megabyte kept for the run's lifetime).
        func entry(_ service: some Service) -> Entry { Entry(service: service, serviceName: String(describing: type(of: service))) }
        var services: [Entry] = [
            entry(PublisherService(publisher: publisher, store: store, drainBound: settings.drainBound, logger: Logger(label: "publisher"))),
            entry(OutboxMaintenanceService(store: store, logger: Logger(label: "outbox"))),
            entry(PipelineService(pipeline: pipeline)),
        ]
        services += wiring.services(connections: connections).map { entry($0) }
        services.append(entry(MonitorService(monitor: monitor, store: store, client: client, pipeline: pipeline, publisher: publisher)))
        if let reload = settings.reload { services.append(entry(ReloadService(running: config, logger: Logger(label: "reload"), load: reload))) }
        if let led = config.board.statusLED {
            services.append(entry(StatusLEDService(chip: led.chip, offset: led.line, logger: Logger(label: "led")) { monitor.health() }))
        }
        services.append(entry(StartupMemoryService(heartbeat: wiring.loopBeat, staleAfter: wiring.stale, pageOutExecutable: settings.pageOutAfterStart,
                                                   logger: Logger(label: "memory"))))
        services.append(entry(NotifyService(notifier: SystemdNotifier(), heartbeat: wiring.loopBeat, staleAfter: wiring.stale,
                                            logger: Logger(label: "systemd")) { monitor.statusLine() }))
        return GatewayApplication(config: config, store: store, client: client, publisher: publisher, pipeline: pipeline, monitor: monitor,
                                  endpoint: endpoint, services: services, settings: settings, logger: logger)
    }

    /// Runs every service until a shutdown signal (or the task's cancellation), then closes the outbox.
    public func run() async throws {
        defer { endpoint?.stop() }
        var group = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: settings.shutdownSignals, logger: logger)
        group.maximumGracefulShutdownDuration = settings.drainBound + .seconds(15)
        do {
            try await ServiceGroup(configuration: group).run()
        } catch {
            await store.close()
            throw error
        }
        await store.close()
    }

    /// Each configured rail found by id on this machine (sysfs under rails.sysfs_root, GPUs through NVML).
    static func findRails(_ config: GatewayConfig) async throws(GatewayStartError) -> [SourceWiring.Rail] {
        guard !config.rails.sources.isEmpty else { return [] }
        let root = config.rails.sysfsRoot, nvmlPath = config.rails.nvmlLibrary
        let needsNVML = config.rails.sources.contains { $0.rail.hasPrefix("nvml:") }
        let inventory = await runBlocking { RailInventory.discover(root: root, nvmlLibraryPath: needsNVML ? nvmlPath : nil) }
        let sampler = RailSampler(tree: inventory.tree, nvml: inventory.nvml)
        var rails: [SourceWiring.Rail] = []
        for source in config.rails.sources {
            guard let rail = inventory.rail(id: source.rail) else {
                let known = inventory.rails.map(\.id).joined(separator: ", ")
                throw .config("\(config.file): rails: no rail '\(source.rail)' on this machine (NVML: \(inventory.nvmlStatus)); "
                              + "`metergate scan --rails` lists them: \(known.isEmpty ? "none" : known)")
            }
            rails.append(SourceWiring.Rail(source: source, rail: rail, sampler: sampler))
        }
        return rails
    }

    /// This boot's id: accounting tells a restart within one boot from a reboot (monotonic clock reset).
    public static func currentBootID() -> String? {
        (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
