import Delivery
import ArgumentParser
import Foundation
import Gateway
import Logging
import MQTT
import MeterCore
import Modbus
import Metrics
import Outbox
import PowerRails
import Prometheus
import ServiceLifecycle
import Signing
import UnixSignals

/// `metergate run`: the gateway service.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: poll the configured meters, account, sign, store and publish readings.",
        discussion: """
            Sources → accounting → signing → SQLite outbox → MQTT, as services that stop in reverse order.
            SIGTERM or SIGINT: polling stops, accounting state is committed, pending records drain to the broker
            for a bounded time (the rest stay in the outbox for the restart), then the process exits 0.
            SIGHUP re-reads the config: the log level applies at once; other changes are named with the restart
            they need. Under systemd (Type=notify): READY=1 once the outbox is open and the first poll is done,
            WATCHDOG=1 while the poll loop runs, STATUS= with the outbox depth.
            """)

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    @Option(help: "How long pending records may drain to the broker at shutdown, e.g. 5s.")
    var drainTimeout: String = "5s"

    @Flag(inversion: .prefixedNo, help: """
        Once started (first poll done), page out the executable's pages that only start-up read \
        (madvise MADV_PAGEOUT, Linux 5.4+); pages in use fault back in.
        """)
    var pageOutAfterStart = true

    /// Malloc arenas: glibc's default is up to eight per core; the gateway's few threads allocate little.
    static let mallocArenas: Int32 = 2

    func run() async throws {
        // Before the services start their threads: arenas are made when threads contend for the heap, and the
        // allocator keeps what the per-record churn frees (HeapTrimming) instead of trimming after every other record.
        let arenas = Result { () throws(ProcessMemoryError) in try ProcessMemory.limitMallocArenas(to: Self.mallocArenas) }
        let trimThresholdSet = HeapTrimming.setThreshold()
        let config = try options.load()
        log.bootstrap(default: config.logLevel)
        let logger = Logger(label: "metergate")
        if case .failure(let error) = arenas { logger.warning("malloc arenas not limited: \(error)") }
        if !trimThresholdSet { logger.warning("malloc trim threshold not set: mallopt(M_TRIM_THRESHOLD, \(HeapTrimming.gatewayThreshold)) failed") }
        // Start-up memory goes back in three steps, each after work that is not done again (until SIGHUP): reading
        // the config and the profiles here, setting up the outbox, key and pipeline before the services start,
        // and the first poll (StartupMemoryService). Each step bounds the peak to what the next one touches.
        await StartupMemoryService.releaseNow(after: "configuration", pageOutExecutable: pageOutAfterStart, logger: logger)
        // Metrics first: every counter made after this point reports to the registry.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        logger.info("starting", metadata: ["gateway": "\(config.gateway)", "board": "\(config.board.id)", "meters": "\(config.meters.count)", "config": "\(config.file)"])
        for advice in config.advisories { logger.warning("config advice: \(advice)") }
        guard let drainMillis = parseMillis(drainTimeout) else { throw Failure.usage("--drain-timeout '\(drainTimeout)': expected a duration such as 5s") }
        // Buses first: one that cannot be opened (its RS-485 direction GPIO missing or busy) stops the start, naming
        // the chip, the line, the C call and errno.
        let connections: [Identifier: ModbusConnection]
        do { connections = try PollService.openConnections(config) } catch { throw Failure.run("\(config.file): \(error)") }

        // State directory, key, outbox: refuse to start without them, naming the file and the fix.
        do {
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw Failure.run("cannot create the state directory \(config.stateDirectory): \(error.localizedDescription)")
        }
        let key = try ConfigOptions.signingKey(of: config)
        guard let host = config.mqtt.host else {
            throw Failure.usage("\(config.file): mqtt.host: no broker configured; the gateway needs one to publish to")
        }
        let store: SQLiteOutbox
        do {
            store = try await SQLiteOutbox.open(
                path: config.outbox.path,
                configuration: OutboxConfiguration(retention: config.outbox.retention, quotaBytes: config.outbox.quotaBytes, quotaPolicy: config.outbox.quotaPolicy),
                logger: Logger(label: "outbox"))
        } catch {
            throw Failure.run("cannot open the outbox \(config.outbox.path): \(error)")
        }
        if let moved = store.openReport.quarantined { logger.error("the outbox was damaged and moved aside: \(moved)") }
        logger.info("outbox open", metadata: ["path": "\(config.outbox.path)", "epoch": "\(store.epoch)", "created": "\(store.openReport.created)"])

        // MQTT: status online/offline (retained, last will), public keys retained, records QoS 1.
        let topics = MeterGateTopics(gateway: config.gateway.rawValue)
        var password: String?
        if let file = config.mqtt.passwordFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw Failure.usage("cannot read mqtt.password_file \(file)") }
            password = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // The retained keys topic: the current key and every earlier one, so records from before a rotation verify.
        let keysDocument = Array(try ConfigOptions.keysAnnouncement(of: config, key: key).document.utf8)
        let client = MQTTClient(configuration: MQTTClientConfiguration(
            host: host, port: config.mqtt.port, clientID: config.mqtt.clientID ?? "metergate-\(config.gateway)",
            username: config.mqtt.username, password: password,
            tls: config.mqtt.caFile.map { MQTTTLSConfiguration(caFile: $0, certFile: config.mqtt.certFile, keyFile: config.mqtt.keyFile) },
            keepaliveSeconds: Int(config.mqtt.keepalive.components.seconds),
            will: topics.offline, birthMessages: [topics.online, topics.keysMessage(keysDocument)], farewellMessages: [topics.offline],
            // Capped at 15 s: a backlog waits at most that long after the broker is back; the jitter spreads a fleet.
            backoff: BackoffPolicy(initial: .milliseconds(500), maximum: .seconds(15)),
            maxInflight: config.mqtt.inflightWindow), logger: Logger(label: "mqtt"))
        let publisher = OutboxPublisher(store: store, sink: MQTTSink(client: client, topics: topics),
                                        configuration: .init(window: config.mqtt.inflightWindow, replayLimits: config.mqtt.replay,
                                                             knownMeters: Set(config.meters.map(\.id.rawValue) + config.rails.sources.map(\.id.rawValue)
                                                                              + config.pulses.map(\.id.rawValue))),
                                        logger: Logger(label: "publisher"))

        // Power rails: found by id on this machine (sysfs under rails.sysfs_root, GPUs through NVML).
        var rails: [(source: RailsConfig.Source, rail: RailDescription)] = []
        var sampler: RailSampler?
        if !config.rails.sources.isEmpty {
            let root = config.rails.sysfsRoot, nvmlPath = config.rails.nvmlLibrary
            let needsNVML = config.rails.sources.contains { $0.rail.hasPrefix("nvml:") }
            let inventory = await runBlocking { RailInventory.discover(root: root, nvmlLibraryPath: needsNVML ? nvmlPath : nil) }
            for source in config.rails.sources {
                guard let rail = inventory.rail(id: source.rail) else {
                    let known = inventory.rails.map(\.id).joined(separator: ", ")
                    throw Failure.usage("\(config.file): rails: no rail '\(source.rail)' on this machine (NVML: \(inventory.nvmlStatus)); "
                                        + "`metergate scan --rails` lists them: \(known.isEmpty ? "none" : known)")
                }
                rails.append((source, rail))
            }
            sampler = RailSampler(tree: inventory.tree, nvml: inventory.nvml)
        }

        // Accounting and signing, fed by the pollers.
        let pipeline: ReadingPipeline
        do {
            pipeline = try await ReadingPipeline(config: config, key: key, store: store, bootID: Self.bootID(), logger: Logger(label: "pipeline"),
                                                 rails: rails, recoveries: store.openReport.recoveries) {
                publisher.recordsAppended()
            }
        } catch {
            throw Failure.usage("cannot set up signing and accounting: \(error)")
        }
        let loopBeat = Heartbeat(), sampleBeat = Heartbeat()
        let pollCounter = Counter(label: "metergate_samples_total")
        let live = config.mqtt.live ? LiveValues(client: client, topics: topics) : nil
        // Each polled source's last sample, for /health to name the silent ones (three of its polls and 10 s).
        var thresholds: [String: Duration] = [:]
        for meter in config.meters { thresholds[meter.id.rawValue] = meter.pollInterval * 3 + .seconds(10) }
        for (source, _) in rails { thresholds[source.id.rawValue] = config.rails.pollInterval * 3 + .seconds(10) }
        let liveness = SourceLiveness(thresholds: thresholds)
        let poller = PollService(config: config, logger: Logger(label: "poll"), connections: connections, loopBeat: { loopBeat.beat() }) { sample in
            sampleBeat.beat()
            liveness.saw(sample.meter.rawValue)
            pollCounter.increment()
            pipeline.submit(sample)
            live?.publish(sample)
        }

        let railPoller = sampler.map { sampler in
            RailPollService(rails: rails, sampler: sampler, period: config.rails.pollInterval, logger: Logger(label: "rails")) { meter, reading, time in
                liveness.saw(meter.rawValue)
                loopBeat.beat()
                sampleBeat.beat()
                pipeline.submit(rail: meter, reading: reading, at: time)
            }
        }

        // Health, metrics, systemd.
        let slowestPoll = (config.meters.map(\.pollInterval) + (rails.isEmpty ? [] : [config.rails.pollInterval])).max() ?? .seconds(1)
        let stale = slowestPoll * 3 + .seconds(10)
        let monitor = GatewayMonitor(heartbeat: sampleBeat, staleAfter: stale, backlogAlarm: config.metrics.backlogAlarm,
                                     meterCount: config.meters.count + rails.count + config.pulses.count, liveness: liveness)
        var endpoint: MetricsEndpoint?
        if config.metrics.enabled {
            do {
                endpoint = try MetricsEndpoint(host: config.metrics.host, port: config.metrics.port, registry: registry) { monitor.health() }
                logger.info("metrics on http://\(config.metrics.host):\(endpoint!.port)/metrics and /health")
            } catch {
                throw Failure.run("\(error) (set metrics.listen to a free port, or metrics.enabled: false)")
            }
        }
        defer { endpoint?.stop() }
        let notify = NotifyService(notifier: SystemdNotifier(), heartbeat: loopBeat, staleAfter: stale,
                                   logger: Logger(label: "systemd")) { monitor.statusLine() }
        let options = self.options
        let reload = ReloadService(running: config, logger: Logger(label: "reload")) { () throws(ReloadService.ConfigErrorsDescription) in
            do { return try options.loadValidated() } catch { throw .init("\(error)") }
        }

        // Services stop in reverse order: systemd notifier, reload, monitor, poller (no more samples),
        // pipeline (saves accounting state), publisher (drains within the bound), then the store closes.
        typealias Entry = ServiceGroupConfiguration.ServiceConfiguration
        // Named by type: the default name is the service's whole `description` (for the poller, the reload
        // service: the entire config with every meter's profile, over a megabyte kept for the run's lifetime).
        func entry(_ service: some Service) -> Entry { Entry(service: service, serviceName: String(describing: type(of: service))) }
        var services: [Entry] = [
            entry(PublisherService(publisher: publisher, store: store, drainBound: .milliseconds(drainMillis), logger: Logger(label: "publisher"))),
            entry(PipelineService(pipeline: pipeline)),
            entry(OutboxMaintenanceService(store: store, logger: Logger(label: "outbox"))),
            entry(poller),
        ]
        if let railPoller { services.append(entry(railPoller)) }
        if !config.pulses.isEmpty {
            services.append(entry(PulseService(pulses: config.pulses, stateDirectory: config.stateDirectory, logger: Logger(label: "pulse")) { meter, count, time in
                loopBeat.beat()
                sampleBeat.beat()
                pipeline.submit(count: count, of: meter, at: time)
            }))
        }
        services.append(entry(MonitorService(monitor: monitor, store: store, client: client, pipeline: pipeline, publisher: publisher)))
        services.append(entry(reload))
        if let led = config.board.statusLED {
            services.append(entry(StatusLEDService(chip: led.chip, offset: led.line, logger: Logger(label: "led")) { monitor.health() }))
        }
        services.append(entry(StartupMemoryService(heartbeat: loopBeat, staleAfter: stale, pageOutExecutable: pageOutAfterStart,
                                                   logger: Logger(label: "memory"))))
        services.append(entry(notify))
        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .milliseconds(drainMillis) + .seconds(15)
        await StartupMemoryService.releaseNow(after: "set-up", pageOutExecutable: pageOutAfterStart, logger: logger)
        do {
            try await ServiceGroup(configuration: groupConfiguration).run()
        } catch {
            await store.close()
            logger.error("stopped with an error: \(error)")
            throw Failure.run("\(error)")
        }
        await store.close()
        logger.info("stopped cleanly")
    }

    /// This boot's id: accounting tells a restart within one boot from a reboot (monotonic clock reset).
    static func bootID() -> String? {
        (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
