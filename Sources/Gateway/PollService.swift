import Foundation
import Logging
import MeterCore
import Modbus
import ServiceLifecycle

/// Polls every configured Modbus meter, one task per bus, and hands each sample to `sink`.
///
/// Units on one bus are read one after another through the bus's single ``ModbusConnection`` (an RTU line
/// carries one frame at a time); buses run concurrently. A failed poll is logged and counted, and the
/// next meter is read as usual.
public struct PollService: Service {
    public typealias Sink = @Sendable (Sample) async -> Void

    let config: GatewayConfig
    let logger: Logger
    let sink: Sink
    let time: any TimeSource

    public init(config: GatewayConfig, logger: Logger, time: any TimeSource = SystemTimeSource(), sink: @escaping Sink) {
        self.config = config
        self.logger = logger
        self.time = time
        self.sink = sink
    }

    public func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for bus in config.buses {
                let meters = config.meters.filter { $0.bus == bus.id }
                guard !meters.isEmpty else { continue }
                let connection = try ModbusConnection(bus.transport, responseTimeout: bus.responseTimeout)
                group.addTask {
                    await pollBus(bus, meters: meters, connection: connection)
                }
            }
        }
    }

    private func pollBus(_ bus: BusConfig, meters: [MeterConfig], connection: ModbusConnection) async {
        var logger = logger
        logger[metadataKey: "bus"] = "\(bus.id)"
        logger.info("polling \(meters.count) meter(s) on \(bus.transport)")
        let period = meters.map(\.pollInterval).min() ?? .seconds(1)
        let clock = ContinuousClock()
        var next = clock.now
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            for meter in meters {
                if Task.isCancelled { break }
                await poll(meter, connection: connection, logger: logger)
            }
            next = next.advanced(by: period)
            if next < clock.now { next = clock.now }
            try? await Task.sleep(until: next, clock: clock)
        }
        await connection.close()
        logger.info("stopped polling")
    }

    private func poll(_ meter: MeterConfig, connection: ModbusConnection, logger: Logger) async {
        var values: [Quantity: Double] = [:]
        let stamp = time.now()
        for field in meter.profile.fields where [.power, .energyImport, .energyExport].contains(field.quantity) {
            do {
                let words: [UInt16]
                switch field.space {
                case .input: words = try await connection.readInputRegisters(unit: meter.unit, address: field.address, count: field.type.registerCount)
                case .holding: words = try await connection.readHoldingRegisters(unit: meter.unit, address: field.address, count: field.type.registerCount)
                }
                if let v = decodeRegisters(words, as: field.type, wordOrder: field.wordOrder, byteOrder: field.byteOrder) {
                    values[field.quantity] = v.doubleValue * field.scale * (field.unit.toBase ?? 1)
                }
            } catch {
                logger.warning("poll failed", metadata: ["meter": "\(meter.id)", "error": "\(error)"])
                return
            }
        }
        let power = values[.power].map { String(format: "%.1f W", $0) } ?? "-"
        let energy = values[.energyImport].map { String(format: "%.3f kWh", $0 / 1000) } ?? "-"
        logger.info("polled \(meter.id): power \(power), import \(energy)", metadata: ["meter": "\(meter.id)", "unit": "\(meter.unit)"])
        await sink(Sample(meter: meter.id, time: stamp, values: values))
    }
}
