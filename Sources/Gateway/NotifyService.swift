import Logging
import ServiceLifecycle
import Synchronization

/// When the poll loop last made progress, on the monotonic clock.
public final class Heartbeat: Sendable {
    private let last = Mutex<ContinuousClock.Instant?>(nil)
    public init() {}
    public func beat() { last.withLock { $0 = ContinuousClock.now } }
    /// Whether a beat came within `window`.
    public func isFresh(within window: Duration) -> Bool {
        last.withLock { $0.map { ContinuousClock.now - $0 <= window } ?? false }
    }
}

/// Tells systemd the gateway's state: READY=1 once the first poll cycle completed, WATCHDOG=1 at half the
/// watchdog interval only while the heartbeat is fresh (so a wedged poll loop gets the service restarted),
/// STATUS= lines, and STOPPING=1 on shutdown. Does nothing when not started by systemd.
public struct NotifyService: Service {
    let notifier: SystemdNotifier
    let heartbeat: Heartbeat
    /// How old the last beat may be for the loop to count as healthy.
    let staleAfter: Duration
    let status: @Sendable () -> String
    let logger: Logger

    public init(notifier: SystemdNotifier, heartbeat: Heartbeat, staleAfter: Duration, logger: Logger, status: @escaping @Sendable () -> String) {
        self.notifier = notifier
        self.heartbeat = heartbeat
        self.staleAfter = staleAfter
        self.logger = logger
        self.status = status
    }

    public func run() async throws {
        guard notifier.isEnabled else {
            try? await gracefulShutdown()
            return
        }
        let tick = notifier.watchdogInterval.map { $0 / 2 } ?? .seconds(5)
        var ready = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let healthy = heartbeat.isFresh(within: staleAfter)
            var message = "STATUS=\(status())"
            if healthy && !ready {
                message = "READY=1\n" + message
                ready = true
                logger.info("told systemd READY=1")
            }
            if healthy && notifier.watchdogInterval != nil { message += "\nWATCHDOG=1" }
            if !healthy && ready { logger.warning("poll loop made no progress for \(staleAfter): withholding the watchdog ping") }
            do { try notifier.notify(message) } catch { logger.error("\(error)") }
            try? await Task.sleep(for: ready ? tick : .milliseconds(200))
        }
        try? notifier.notify("STOPPING=1\nSTATUS=stopping: committing state")
    }
}
