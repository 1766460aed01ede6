import Logging
import Pulse
import ServiceLifecycle

/// The board's status LED: steady on while healthy, a slow blink when something needs attention (see
/// `/health`), off once stopped. A missing or busy GPIO line is logged once; the gateway runs on without it.
public struct StatusLEDService: Service {
    let chip: String
    let offset: Int
    let health: @Sendable () -> HealthReport
    let logger: Logger

    public init(chip: String, offset: Int, logger: Logger, health: @escaping @Sendable () -> HealthReport) {
        self.chip = chip
        self.offset = offset
        self.logger = logger
        self.health = health
    }

    /// What the LED shows at a tick of `tick` (two ticks a second).
    static func level(healthy: Bool, tick: Int) -> Bool { healthy || tick % 2 == 0 }

    public func run() async throws {
        let led: GPIOOutputLine
        do {
            led = try GPIOOutputLine(chip: chip, offset: offset, consumer: "metergate-status", initial: false)
        } catch {
            logger.warning("status LED unavailable; running without it", metadata: ["error": "\(error)"])
            try? await gracefulShutdown()
            return
        }
        var tick = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await led.set(Self.level(healthy: health().healthy, tick: tick))
            tick += 1
            try? await Task.sleep(for: .milliseconds(500))
        }
        try? await led.set(false)
    }
}
