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
        // Buses first: a missing RS-485 direction line is named before anything else is checked.
        let buses: [Identifier: ModbusConnection]
        do { buses = try GatewayApplication.openBuses(config) } catch { throw Failure.run(error.description) }
        let key = try ConfigOptions.signingKey(of: config)
        var password: String?
        if let file = config.mqtt.passwordFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw Failure.usage("cannot read mqtt.password_file \(file)") }
            password = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // The retained keys topic: the current key and every earlier one, so records from before a rotation verify.
        let keys = Array(try ConfigOptions.keysAnnouncement(of: config, key: key).document.utf8)
        var settings = GatewayApplication.Settings()
        settings.drainBound = .milliseconds(drainMillis)
        settings.pageOutAfterStart = pageOutAfterStart
        settings.registry = registry
        let options = self.options
        settings.reload = { () throws(ReloadService.ConfigErrorsDescription) in
            do { return try options.loadValidated() } catch { throw .init("\(error)") }
        }
        let application: GatewayApplication
        do {
            application = try await GatewayApplication.make(config: config, key: key, keys: keys, password: password, buses: buses,
                                                                settings: settings, logger: logger)
        } catch {
            throw error.isConfigError ? Failure.usage(error.description) : Failure.run(error.description)
        }
        await StartupMemoryService.releaseNow(after: "set-up", pageOutExecutable: pageOutAfterStart, logger: logger)
        do {
            try await application.run()
        } catch {
            logger.error("stopped with an error: \(error)")
            throw Failure.run("\(error)")
        }
        logger.info("stopped cleanly")
    }
}
