import ArgumentParser
import Gateway
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

/// `metergate run`: the gateway service.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: poll the configured meters and rails, account, sign, store and publish readings.",
        discussion: "SIGTERM or SIGINT stops it cleanly: polling ends, state is committed, then the process exits 0.")

    @OptionGroup var options: ConfigOptions
    @OptionGroup var log: LogOptions

    func run() async throws {
        let config = try options.load()
        log.bootstrap(default: config.logLevel)
        let logger = Logger(label: "metergate")
        logger.info("starting", metadata: ["gateway": "\(config.gateway)", "board": "\(config.board.id)", "meters": "\(config.meters.count)", "config": "\(config.file)"])
        // The poll loop beats on every sample; systemd's watchdog is fed only while it does.
        let heartbeat = Heartbeat()
        let poller = PollService(config: config, logger: Logger(label: "poll")) { _ in heartbeat.beat() }
        let slowestPoll = config.meters.map(\.pollInterval).max() ?? .seconds(1)
        let meterCount = config.meters.count
        let notify = NotifyService(notifier: SystemdNotifier(), heartbeat: heartbeat, staleAfter: slowestPoll * 3 + .seconds(10),
                                   logger: Logger(label: "systemd")) { "polling \(meterCount) meter(s)" }
        // Prometheus exposition and /health on the configured (loopback by default) address.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        var endpoint: MetricsEndpoint?
        if config.metrics.enabled {
            let stale = slowestPoll * 3 + .seconds(10)
            do {
                endpoint = try MetricsEndpoint(host: config.metrics.host, port: config.metrics.port, registry: registry) {
                    heartbeat.isFresh(within: stale)
                        ? HealthReport(healthy: true, detail: "polling \(meterCount) meter(s)")
                        : HealthReport(healthy: false, detail: "no meter answered within \(stale)")
                }
                logger.info("metrics on http://\(config.metrics.host):\(endpoint!.port)/metrics and /health")
            } catch {
                throw Failure.run("\(error) (set metrics.listen to a free port, or metrics.enabled: false)")
            }
        }
        defer { endpoint?.stop() }
        let options = self.options
        let reload = ReloadService(running: config, logger: Logger(label: "reload")) { () throws(ReloadService.ConfigErrorsDescription) in
            do { return try options.loadValidated() } catch { throw .init("\(error)") }
        }
        // Services stop in reverse order: the notifier first (STOPPING=1), the poller after it.
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: poller), .init(service: reload), .init(service: notify)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            logger.error("stopped with an error: \(error)")
            throw Failure.run("\(error)")
        }
        logger.info("stopped cleanly")
    }
}
