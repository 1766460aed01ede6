import Logging
import MeterCore
import PowerRails
import ServiceLifecycle

/// Reads the configured power rails on their period (sysfs and NVML on the sampler's own queue) and hands
/// each reading to the pipeline. A rail that cannot be read is logged once when it fails and once when it
/// recovers; its intervals close as gaps meanwhile.
public struct RailPollService: Service {
    let rails: [(source: RailsConfig.Source, rail: RailDescription)]
    let sampler: RailSampler
    let period: Duration
    let time: any TimeSource
    let logger: Logger
    let deliver: @Sendable (MeterID, RailReading, Timestamp) -> Void

    public init(rails: [(source: RailsConfig.Source, rail: RailDescription)], sampler: RailSampler, period: Duration,
                time: any TimeSource = SystemTimeSource(), logger: Logger,
                deliver: @escaping @Sendable (MeterID, RailReading, Timestamp) -> Void) {
        self.rails = rails
        self.sampler = sampler
        self.period = period
        self.time = time
        self.logger = logger
        self.deliver = deliver
    }

    public func run() async throws {
        guard !rails.isEmpty else { return }
        logger.info("reading \(rails.count) rail(s) every \(period)", metadata: ["rails": "\(rails.map(\.rail.id).joined(separator: ","))"])
        var failing: Set<MeterID> = []
        let clock = ContinuousClock()
        var next = clock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            for (source, rail) in rails {
                do {
                    let reading = try await sampler.read(rail)
                    deliver(source.id, reading, time.now())
                    if failing.remove(source.id) != nil { logger.notice("rail readable again", metadata: ["rail": "\(rail.id)"]) }
                } catch {
                    if failing.insert(source.id).inserted {
                        logger.warning("rail read failed", metadata: ["rail": "\(rail.id)", "stream": "\(source.id)", "error": "\(error)"])
                    }
                }
            }
            next = next.advanced(by: period)
            if next < clock.now { next = clock.now }
            try? await Task.sleep(until: next, clock: clock)
        }
    }
}
