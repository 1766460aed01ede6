import Delivery
import Foundation
import Logging
import MQTT
import Metrics
import Outbox
import ServiceLifecycle
import Synchronization

/// What the gateway knows about its own health, refreshed every few seconds for `/health`, STATUS= and
/// the outbox gauges.
public struct GatewayHealthState: Sendable {
    public var pollingHealthy = false
    public var brokerConnected = false
    public var pending: Int64 = 0
    public var inflight: Int64 = 0
    public var delivered: Int64 = 0
    public var oldestUnsentAge: Double = 0
    public var quotaAlarm = false
    public var lastStoreError: String?
    /// Streams whose records cannot be signed now (meter → why): the others go on; `/health` names them.
    public var blockedStreams: [String: String] = [:]
    /// Meters answered by another serial than the one commissioned (meter → what answered): `/health` names them.
    public var identityAlarms: [String: String] = [:]
}

/// Samples the outbox and the broker connection, publishes gauges, and answers health questions from the
/// latest sample (the `/health` handler must not block on the store).
public final class GatewayMonitor: Sendable {
    private let state = Mutex(GatewayHealthState())
    let heartbeat: Heartbeat
    let staleAfter: Duration
    let backlogAlarm: Int64
    let meterCount: Int
    let liveness: SourceLiveness?

    public init(heartbeat: Heartbeat, staleAfter: Duration, backlogAlarm: Int, meterCount: Int, liveness: SourceLiveness? = nil) {
        self.liveness = liveness
        self.heartbeat = heartbeat
        self.staleAfter = staleAfter
        self.backlogAlarm = Int64(backlogAlarm)
        self.meterCount = meterCount
    }

    public var snapshot: GatewayHealthState { state.withLock { $0 } }

    func update(_ body: (inout GatewayHealthState) -> Void) { state.withLock { body(&$0) } }

    /// `/health`: 200 only when sources are read, the outbox is writable, and the broker is connected or the
    /// backlog is below its alarm.
    public func health(now: ContinuousClock.Instant = .now) -> HealthReport {
        let s = snapshot
        let polling = heartbeat.isFresh(within: staleAfter)
        var problems: [String] = []
        if !polling { problems.append("no meter answered within \(staleAfter)") }
        for (source, silence) in liveness?.silent(now: now) ?? [] {
            problems.append("\(source) has not answered for \(silence.components.seconds) s")
        }
        if let error = s.lastStoreError { problems.append("outbox not writable: \(error)") }
        for (meter, why) in s.blockedStreams.sorted(by: { $0.key < $1.key }) { problems.append("stream \(meter) cannot be signed (\(why))") }
        for (meter, what) in s.identityAlarms.sorted(by: { $0.key < $1.key }) { problems.append("meter \(meter) is not the one commissioned (\(what))") }
        let backlog = s.pending + s.inflight
        if !s.brokerConnected && backlog >= backlogAlarm { problems.append("broker disconnected with \(backlog) unsent records (alarm at \(backlogAlarm))") }
        if s.quotaAlarm { problems.append("unsent records exceed the outbox quota") }
        if problems.isEmpty {
            return HealthReport(healthy: true, detail: "\(meterCount) meter(s), broker \(s.brokerConnected ? "connected" : "disconnected"), \(backlog) unsent")
        }
        return HealthReport(healthy: false, detail: problems.joined(separator: "; "))
    }

    /// The one-line STATUS= for systemd.
    public func statusLine() -> String {
        let s = snapshot
        let blocked = s.blockedStreams.isEmpty ? "" : "; not signing: \(s.blockedStreams.keys.sorted().joined(separator: ", "))"
        let strangers = s.identityAlarms.isEmpty ? "" : "; not the commissioned meter: \(s.identityAlarms.keys.sorted().joined(separator: ", "))"
        return "\(meterCount) meter(s)\(blocked)\(strangers); broker \(s.brokerConnected ? "connected" : "disconnected"); outbox \(s.pending) pending, \(s.inflight) inflight, \(s.delivered) delivered"
    }
}

/// Refreshes the ``GatewayMonitor`` every few seconds and sets the outbox gauges.
public struct MonitorService: Service {
    let monitor: GatewayMonitor
    let store: any OutboxStore
    let client: MQTTClient
    let pipeline: ReadingPipeline
    let publisher: OutboxPublisher
    let interval: Duration

    public init(monitor: GatewayMonitor, store: any OutboxStore, client: MQTTClient, pipeline: ReadingPipeline, publisher: OutboxPublisher,
                interval: Duration = .seconds(2)) {
        self.monitor = monitor
        self.store = store
        self.client = client
        self.pipeline = pipeline
        self.publisher = publisher
        self.interval = interval
    }

    public func run() async throws {
        let pendingGauge = Gauge(label: "metergate_outbox_records", dimensions: [("state", "pending")])
        let inflightGauge = Gauge(label: "metergate_outbox_records", dimensions: [("state", "inflight")])
        let deliveredGauge = Gauge(label: "metergate_outbox_records", dimensions: [("state", "delivered")])
        let oldestGauge = Gauge(label: "metergate_outbox_oldest_unsent_seconds")
        let bytesGauge = Gauge(label: "metergate_outbox_file_bytes")
        let droppedGauge = TotalCounter(label: "metergate_outbox_dropped_total")
        let recoveredGauge = Gauge(label: "metergate_outbox_recovered_streams")
        let connectedGauge = Gauge(label: "metergate_mqtt_connected")
        let signedGauge = TotalCounter(label: "metergate_records_signed_total")
        let publishedGauge = TotalCounter(label: "metergate_mqtt_published_total")
        let deliveredGauge2 = TotalCounter(label: "metergate_mqtt_acknowledged_total")
        let returnedGauge = TotalCounter(label: "metergate_mqtt_returned_to_pending_total")
        let replayedGauge = TotalCounter(label: "metergate_mqtt_replayed_total")
        let connectionsGauge = TotalCounter(label: "metergate_mqtt_connections_total")

        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let connected = client.currentSession != nil
            let appendError = await pipeline.lastAppendError
            let blockedStreams = await pipeline.blocked
            let identityAlarms = await pipeline.identityAlarms
            let signed = await pipeline.recordsAppended
            if let stats = try? await store.stats() {
                let age = stats.oldestUnsent.map { max(0, Date().timeIntervalSince($0)) } ?? 0
                monitor.update {
                    $0.pending = stats.pending
                    $0.inflight = stats.inflight
                    $0.delivered = stats.delivered
                    $0.oldestUnsentAge = age
                    $0.quotaAlarm = stats.quotaAlarm
                }
                pendingGauge.record(stats.pending)
                inflightGauge.record(stats.inflight)
                deliveredGauge.record(stats.delivered)
                oldestGauge.record(age)
                bytesGauge.record(stats.fileBytes)
                droppedGauge.record(stats.droppedTotal)
                recoveredGauge.record(stats.recoveredStreams)
            }
            monitor.update {
                $0.brokerConnected = connected
                $0.lastStoreError = appendError
                $0.blockedStreams = blockedStreams
                $0.identityAlarms = identityAlarms
                $0.pollingHealthy = monitor.heartbeat.isFresh(within: monitor.staleAfter)
            }
            connectedGauge.record(connected ? 1 : 0)
            signedGauge.record(signed)
            let counters = await publisher.counters
            publishedGauge.record(counters.published)
            deliveredGauge2.record(counters.delivered)
            returnedGauge.record(counters.returnedToPending)
            replayedGauge.record(counters.replayed)
            connectionsGauge.record(counters.connections)

            try? await Task.sleep(for: interval)
        }
    }
}

/// A Prometheus counter fed from a running total kept elsewhere (the store, the publisher): it advances by the
/// difference, so `*_total` series are typed `counter`, as Prometheus expects of them, not `gauge`.
final class TotalCounter {
    private let counter: Counter
    private var last: Int64 = 0

    init(label: String) { counter = Counter(label: label) }

    func record<T: BinaryInteger>(_ total: T) {
        let value = Int64(clamping: total)
        if value > last { counter.increment(by: value - last) }
        last = max(last, value)
    }
}
