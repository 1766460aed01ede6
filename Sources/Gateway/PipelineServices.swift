import Foundation
import Logging
import Delivery
import MQTT
import MeterCore
import Outbox
import ServiceLifecycle

/// Runs the ``ReadingPipeline``: its input loop plus a once-a-second tick. On graceful shutdown (after the
/// poller has stopped) it ends the input, which saves every stream's accounting state, then returns.
public struct PipelineService: Service {
    let pipeline: ReadingPipeline
    let time: any TimeSource

    public init(pipeline: ReadingPipeline, time: any TimeSource = SystemTimeSource()) {
        self.pipeline = pipeline
        self.time = time
    }

    public func run() async throws {
        let pipeline = pipeline, time = time
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await pipeline.run() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    pipeline.submitTick(time.now())
                }
            }
            try? await gracefulShutdown()
            // The poller stopped before us (services stop in reverse order): no more samples come.
            pipeline.finish()
            await group.next()      // the input loop has saved state
            group.cancelAll()
        }
    }
}

/// Runs the ``OutboxPublisher``. On graceful shutdown it lets what is pending drain to the broker for at
/// most `drainBound`, then stops the publisher, which returns unacknowledged records to pending (they go
/// out after the restart) and disconnects with the farewell `offline` status.
public struct PublisherService: Service {
    let publisher: OutboxPublisher
    let store: any OutboxStore
    let drainBound: Duration
    let logger: Logger

    public init(publisher: OutboxPublisher, store: any OutboxStore, drainBound: Duration, logger: Logger) {
        self.publisher = publisher
        self.store = store
        self.drainBound = drainBound
        self.logger = logger
    }

    public func run() async throws {
        let publisher = publisher
        let running = Task { try await publisher.run() }
        await withTaskCancellationHandler {
            try? await gracefulShutdown()
        } onCancel: {
            running.cancel()
        }
        let deadline = ContinuousClock.now + drainBound
        while ContinuousClock.now < deadline, let stats = try? await store.stats(), stats.pending + stats.inflight > 0 {
            try? await Task.sleep(for: .milliseconds(100))
        }
        if let stats = try? await store.stats(), stats.pending + stats.inflight > 0 {
            logger.notice("stopping with records not yet acknowledged; they are kept and sent after the restart",
                          metadata: ["pending": "\(stats.pending)", "inflight": "\(stats.inflight)"])
        }
        running.cancel()
        _ = try? await running.value
    }
}

/// Applies the outbox's retention and quota every `interval` (appends over the quota prune at once; this is for
/// delivered records that age out while nothing is appended). Its own service: no sink schedules store work.
public struct OutboxMaintenanceService: Service {
    let store: any OutboxStore
    let interval: Duration
    let logger: Logger
    let sleep: @Sendable (Duration) async throws -> Void
    let now: @Sendable () -> Date

    /// `sleep` and `now` are injected so that tests step time instead of waiting for it.
    public init(store: any OutboxStore, interval: Duration = .seconds(60), logger: Logger,
                sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.interval = interval
        self.logger = logger
        self.sleep = sleep
        self.now = now
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await sleep(interval)
                do {
                    let report = try await store.maintain(now: now())
                    if report.expired + report.prunedForQuota > 0 {
                        logger.info("outbox maintenance", metadata: ["expired": "\(report.expired)", "pruned_for_quota": "\(report.prunedForQuota)"])
                    }
                } catch {
                    logger.error("outbox maintenance failed; trying again at the next interval", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
