import Logging
import MeterCore
import Metrics
import Modbus
import PowerRails
import ServiceLifecycle

/// How each configured source feeds the pipeline: the services that poll meters, rails and pulse inputs, and
/// what every sample tells health on its way (heartbeats, each source's liveness, live values).
struct SourceWiring: Sendable {
    /// A configured rail as found on this machine, and the sampler that reads it.
    struct Rail: Sendable {
        var source: RailsConfig.Source
        var rail: RailDescription
        var sampler: RailSampler
    }

    let config: GatewayConfig
    let rails: [Rail]
    let pipeline: ReadingPipeline
    let live: LiveValues?
    /// Beats at every turn of a poll loop (systemd's watchdog) and at every sample (health).
    let loopBeat = Heartbeat(), sampleBeat = Heartbeat()
    let liveness: SourceLiveness
    /// Past this without a sample the gateway is unhealthy: three of the slowest polls and 10 s.
    let stale: Duration

    init(config: GatewayConfig, rails: [Rail], pipeline: ReadingPipeline, live: LiveValues?) {
        self.config = config
        self.rails = rails
        self.pipeline = pipeline
        self.live = live
        // Each polled source's last sample, for /health to name the silent ones (three of its polls and 10 s).
        var thresholds: [String: Duration] = [:]
        for meter in config.meters { thresholds[meter.id.rawValue] = meter.pollInterval * 3 + .seconds(10) }
        for rail in rails { thresholds[rail.source.id.rawValue] = config.rails.pollInterval * 3 + .seconds(10) }
        liveness = SourceLiveness(thresholds: thresholds)
        let slowestPoll = (config.meters.map(\.pollInterval) + (rails.isEmpty ? [] : [config.rails.pollInterval])).max() ?? .seconds(1)
        stale = slowestPoll * 3 + .seconds(10)
    }

    /// One service per source kind that is configured, each delivering into the pipeline.
    func services(connections: [Identifier: ModbusConnection]) -> [any Service] {
        let pipeline = pipeline, live = live, liveness = liveness, loopBeat = loopBeat, sampleBeat = sampleBeat
        let pollCounter = Counter(label: "metergate_samples_total")
        var services: [any Service] = [
            PollService(config: config, logger: Logger(label: "poll"), connections: connections, loopBeat: { loopBeat.beat() }) { sample, identity in
                sampleBeat.beat()
                liveness.saw(sample.meter.rawValue)
                pollCounter.increment()
                pipeline.submit(sample, identity: identity)
                live?.publish(sample)
            },
        ]
        if let sampler = rails.first?.sampler {
            services.append(RailPollService(rails: rails.map { ($0.source, $0.rail) }, sampler: sampler, period: config.rails.pollInterval,
                                            logger: Logger(label: "rails")) { meter, reading, time in
                liveness.saw(meter.rawValue)
                loopBeat.beat()
                sampleBeat.beat()
                pipeline.submit(rail: meter, reading: reading, at: time)
            })
        }
        if !config.pulses.isEmpty {
            services.append(PulseService(pulses: config.pulses, stateDirectory: config.stateDirectory, logger: Logger(label: "pulse")) { meter, count, time in
                loopBeat.beat()
                sampleBeat.beat()
                pipeline.submit(count: count, of: meter, at: time)
            })
        }
        return services
    }
}
