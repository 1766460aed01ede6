import Foundation
import Logging
import Metrics
import MeterCore
import Modbus
import ServiceLifecycle
import Synchronization

/// Polls every configured Modbus meter and hands each sample to `sink`, with the meter's identity when the poll read it.
///
/// One ``BusPoller`` per bus: units on one bus are read one after another through the bus's single
/// ``ModbusConnection`` (an RTU line carries one frame at a time), each on its own period, with coalesced
/// requests from the profile's ``RequestPlan``. Buses (RTU lines, TCP endpoints) run concurrently. A meter
/// that does not answer costs one timeout and is backed off, so it never stalls the others.
public struct PollService: Service {
    public typealias Sink = @Sendable (Sample, IdentityReading?) async -> Void

    let config: GatewayConfig
    let logger: Logger
    let sink: Sink
    let time: any TimeSource
    /// Called on every poll outcome, answer or failure: the loop is alive (systemd's watchdog follows it).
    let loopBeat: @Sendable () -> Void
    /// Connections opened before the start (``openConnections(_:)``), by bus id; a bus not here is opened in `run`.
    let connections: [Identifier: ModbusConnection]

    public init(config: GatewayConfig, logger: Logger, time: any TimeSource = SystemTimeSource(),
                connections: [Identifier: ModbusConnection] = [:],
                loopBeat: @escaping @Sendable () -> Void = {}, sink: @escaping Sink) {
        self.config = config
        self.connections = connections
        self.logger = logger
        self.time = time
        self.loopBeat = loopBeat
        self.sink = sink
    }

    public func run() async throws {
        // Nothing to poll (a rails-only gateway): stay up until shutdown, or the group would stop with us.
        guard config.buses.contains(where: { bus in config.meters.contains { $0.bus == bus.id } }) else {
            try? await gracefulShutdown()
            return
        }
        try await withThrowingDiscardingTaskGroup { group in
            for bus in config.buses {
                let meters = config.meters.filter { $0.bus == bus.id }
                guard !meters.isEmpty else { continue }
                let connection = try connections[bus.id] ?? bus.openConnection()
                group.addTask {
                    await pollBus(bus, meters: meters, connection: connection)
                }
            }
        }
    }

    /// Opens the connection of every bus that has meters, with its RS-485 direction line where the board
    /// port needs one: done before the gateway starts, so a missing GPIO chip stops the start naming it.
    public static func openConnections(_ config: GatewayConfig) throws(BusOpenError) -> [Identifier: ModbusConnection] {
        var connections: [Identifier: ModbusConnection] = [:]
        for bus in config.buses where config.meters.contains(where: { $0.bus == bus.id }) {
            connections[bus.id] = try bus.openConnection()
        }
        return connections
    }

    private static func formatted(_ value: Double?, _ format: String) -> String {
        value.map { String(format: format, $0) } ?? "-"
    }

    private func pollBus(_ bus: BusConfig, meters: [MeterConfig], connection: ModbusConnection) async {
        var logger = logger
        logger[metadataKey: "bus"] = "\(bus.id)"
        let direction = connection.direction.map { ", RS-485 direction on \($0.description)" } ?? ""
        logger.info("polling \(meters.count) meter(s) on \(bus.transport)\(direction)")
        let polled = meters.map(\.polled)
        let poller = BusPoller(meters: polled, reader: connection, timing: bus.timing, time: time, executor: connection.serialExecutor)
        let sink = sink, loopBeat = loopBeat
        // Each meter's first answer (and first after a failure) is logged at info, the rest at debug:
        // the journal shows when a meter comes and goes without a line per poll.
        let quiet = Mutex<Set<MeterID>>([])
        // Per meter: polls answered, failed, and failed by timeout (swift-metrics; Prometheus when bootstrapped).
        let answered = Dictionary(uniqueKeysWithValues: meters.map { ($0.id, Counter(label: "metergate_polls_total", dimensions: [("meter", "\($0.id)"), ("result", "ok")])) })
        let failed = Dictionary(uniqueKeysWithValues: meters.map { ($0.id, Counter(label: "metergate_polls_total", dimensions: [("meter", "\($0.id)"), ("result", "error")])) })
        let timedOut = Dictionary(uniqueKeysWithValues: meters.map { ($0.id, Counter(label: "metergate_poll_timeouts_total", dimensions: [("meter", "\($0.id)")])) })
        // The poll loop starts on the poller's own executor: a busy cooperative pool cannot delay it.
        let polling = poller.start(shouldStop: { Task.isShuttingDownGracefully }) { [logger] event in
            loopBeat()
            switch event {
            case .sample(let sample, let unit, let requests, let refused, let identity):
                answered[sample.meter]?.increment()
                let first = quiet.withLock { $0.insert(sample.meter).inserted }
                // The message is formatted only when the level is logged (most polls: debug, off).
                logger.log(level: first ? .info : .debug, "polled \(sample.meter): power \(Self.formatted(sample.values[.power], "%.1f W")), import \(Self.formatted(sample.values[.energyImport].map { $0 / 1000 }, "%.3f kWh"))",
                           metadata: ["meter": "\(sample.meter)", "unit": "\(unit)", "requests": "\(requests)"])
                for error in refused {
                    logger.warning("meter refused a request", metadata: ["meter": "\(sample.meter)", "error": "\(error)"])
                }
                await sink(sample, identity)
            case .failure(let meter, let unit, let error, let consecutive, let retryIn):
                failed[meter]?.increment()
                if case .modbus(let e) = error, e.kind == .timeout { timedOut[meter]?.increment() }
                _ = quiet.withLock { $0.remove(meter) }
                logger.warning("poll failed", metadata: [
                    "meter": "\(meter)", "unit": "\(unit)", "error": "\(error)",
                    "consecutive": "\(consecutive)", "retry_in": "\(retryIn)",
                ])
            }
        }
        // Graceful shutdown cancels the loop at once, even in the middle of a long back-off wait.
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler { await polling.value } onCancel: { polling.cancel() }
        } onGracefulShutdown: {
            polling.cancel()
        }
        await connection.close()
        logger.info("stopped polling")
    }
}
