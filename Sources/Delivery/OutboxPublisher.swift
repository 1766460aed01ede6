import Foundation
import Logging
import MeterCore
import Outbox
import Synchronization

/// Drains the outbox to a ``RecordSink``: pending records oldest first, at most `window` unacknowledged at a
/// time; an acknowledgement marks a record delivered; a disconnect returns the unacknowledged ones to pending.
/// Also serves replay requests (the sink's, or ``requestReplay(_:)``) from delivered records.
///
/// The outbox is the only buffer: the sink is never handed more than the window, and the publisher holds
/// at most a claim batch (or a window, if larger) of records in memory, however large the backlog. It claims
/// from the store a batch at a time, however small the broker's window (mosquitto's Receive Maximum is 20):
/// a burst of records costs one claim, one transaction and one `fdatasync` of the high-water mark, rather
/// than one for every half window.
public actor OutboxPublisher {
    public struct Configuration: Sendable {
        /// The most records handed to the sink and not yet acknowledged.
        public var window: Int
        /// Whether to drain pending records (false: serve replays only, as `metergate replay` does).
        public var drainPending: Bool
        /// Whether to serve the replay requests that arrive through the sink (`cmd/replay` on MQTT).
        public var acceptReplayRequests: Bool
        /// How often acknowledged records are committed when PUBACKs trickle in.
        public var flushInterval: Duration
        /// How long pending records wait after the sink refused one (an MQTT 5 PUBACK reason code ≥ 0x80).
        public var refusalPause: Duration
        /// The most pending records claimed from the store at once (at least a window's room): they are
        /// marked inflight and covered by the high-water mark together, and handed to the sink as the window allows.
        public var claimBatch: Int
        /// What requests from `cmd/replay` may cost (``requestReplay(_:)``, the operator's own, is not bounded).
        public var replayLimits: ReplayLimits
        /// The meters a `cmd/replay` may name (nil: any).
        public var knownMeters: Set<String>?

        public init(window: Int = 64, drainPending: Bool = true, acceptReplayRequests: Bool = true,
                    flushInterval: Duration = .milliseconds(50),
                    refusalPause: Duration = .seconds(1), claimBatch: Int = 128, replayLimits: ReplayLimits = ReplayLimits(),
                    knownMeters: Set<String>? = nil) {
            self.replayLimits = replayLimits
            self.knownMeters = knownMeters
            self.window = max(1, window)
            self.drainPending = drainPending
            self.acceptReplayRequests = acceptReplayRequests
            self.flushInterval = flushInterval
            self.refusalPause = refusalPause
            self.claimBatch = max(1, claimBatch)
        }
    }

    /// Running totals, for metrics, logs and tests.
    public struct Counters: Sendable, Hashable {
        /// Records handed to the sink from the pending queue (including re-sends after a disconnect).
        public var published: Int64 = 0
        /// Records whose PUBACK came and whose delivered state is committed.
        public var delivered: Int64 = 0
        /// Records returned to pending because their connection dropped before the PUBACK.
        public var returnedToPending: Int64 = 0
        /// Acknowledgements that refused the record (an MQTT 5 failure reason code; the record stays pending).
        public var refused: Int64 = 0
        /// Delivered records re-published by replays, and their PUBACKs.
        public var replayed: Int64 = 0
        public var replayAcknowledged: Int64 = 0
        /// Replay requests that could not be parsed, or arrived retained.
        public var badReplayRequests: Int64 = 0
        /// Replay requests by what became of them.
        public var replayAccepted: Int64 = 0
        public var replayClipped: Int64 = 0
        public var replayMerged: Int64 = 0
        public var replayRefused: Int64 = 0
        /// Replies on `replay/result` not sent (and not logged) because too many came at once.
        public var replayRepliesSuppressed: Int64 = 0
        /// The most records that were ever unacknowledged at once (never more than the window).
        public var maxInflight: Int = 0
        /// Ticks handled to the end (the flush and fill of each): the loop is alive, and a test knows a tick is done.
        public var ticks: Int64 = 0
        /// Connections the broker accepted (the first, then every reconnect).
        public var connections: Int64 = 0
    }

    /// The state of the replay queue.
    public struct ReplayProgress: Sendable, Hashable {
        /// Records still to re-publish in the requests being served (an upper bound: gaps are skipped).
        public var remaining: UInt64
        /// Records re-published and acknowledged so far.
        public var acknowledged: Int64
        /// Records in requested ranges that the store does not hold as delivered (never appended, pruned, or not yet delivered).
        public var skipped: Int64
        /// Replays queued or in progress.
        public var active: Int
        public var inflight: Int
    }

    struct Inflight {
        var recordID: Int64
        var isReplay: Bool
    }

    private enum Input: Sendable {
        case sink(SinkEvent)
        case appended
        case tick
        case replay(ReplayRequest)
    }

    private let store: any OutboxStore
    let sink: any RecordSink
    let configuration: Configuration
    let logger: Logger
    /// Sink events, appends, replay requests and ticks, taken a batch at a time.
    private let inbox = BatchInbox<Input>()

    private var session: SinkSession?
    private var window: Int
    var inflight: [SinkTicket: Inflight] = [:]
    private var acknowledged: [Int64] = []
    /// Pending records claimed from the store (inflight there, the high-water mark raised for them) and not
    /// yet handed to the sink, oldest first from `claimedHead`.
    private var claimed: [OutboxRecord] = []
    private var claimedHead = 0
    private var claimedCount: Int { claimed.count - claimedHead }
    /// Sink events appended to ``inbox`` and not yet handled. A window is refilled from the claimed records when
    /// the last PUBACK of a burst (one read of libmosquitto's) is handled, or once it is half empty: a burst is
    /// answered with one batch of publishes, and no PUBACK waits unanswered, which would let TCP's delayed ACK
    /// hold the broker's next PUBACKs (40 ms) under Nagle's algorithm with a small window.
    private let unhandledEvents = EventCount()

    /// A count shared with the sink's callbacks (they hold it, not the publisher).
    private final class EventCount: Sendable {
        let value = Atomic<Int>(0)
    }
    var replays: ReplayQueue
    var replyLimiter: RateLimiter
    /// Whether the replay budget ran out and that was logged (logged once until it allows records again).
    private var replayBudgetSpent = false
    private var replaySkipped: Int64 = 0
    /// After the sink refused a record (an MQTT 5 reason code), pending records wait until then: the
    /// refusal (an ACL, a quota) will not go away in a millisecond and must not turn into a busy loop.
    private var refusedUntil: ContinuousClock.Instant?
    /// Whether the store may hold pending records the publisher has not claimed: set by every append signal
    /// and every return to pending, cleared when a claim comes back short. A tick claims only while it is set
    /// (or once a second, as a safety net): an idle gateway does not query the outbox twenty times a second.
    private var pendingMayWait = true
    private var lastClaim: ContinuousClock.Instant
    /// What the refusal pause, the idle claim, the replay budget and the reply rate are measured by.
    let clock: any MonotonicClock
    static let idleClaimInterval = Duration.seconds(1)
    public internal(set) var counters = Counters()

    /// - Parameter clock: the monotonic clock pauses and rates are measured by (a test steps a manual one).
    public init(store: any OutboxStore, sink: any RecordSink, configuration: Configuration = Configuration(),
                clock: any MonotonicClock = SystemMonotonicClock(), logger: Logger = Logger(label: "metergate.publisher")) {
        self.store = store
        self.clock = clock
        self.lastClaim = clock.now
        self.sink = sink
        self.configuration = configuration
        self.logger = logger
        self.window = min(configuration.window, sink.maxInflight)
        self.replays = ReplayQueue(limits: configuration.replayLimits, now: clock.now)
        self.replyLimiter = RateLimiter(perSecond: configuration.replayLimits.repliesPerSecond, now: clock.now)
    }

    /// Tells the publisher that records were appended (cheap; call after every append).
    public nonisolated func recordsAppended() {
        inbox.append(.appended)
    }

    /// Queues a replay of `request`'s delivered records.
    public nonisolated func requestReplay(_ request: ReplayRequest) {
        inbox.append(.replay(request))
    }

    /// Where the replays stand.
    public func replayProgress() -> ReplayProgress {
        ReplayProgress(remaining: replays.remaining, acknowledged: counters.replayAcknowledged, skipped: replaySkipped,
                       active: replays.cursors.count, inflight: inflight.values.filter(\.isReplay).count)
    }

    /// Starts the sink and publishes until the task is cancelled or the sink's events end.
    /// Commits what was acknowledged, returns records still inflight to pending and shuts the sink down
    /// (sending its farewell messages) before it returns.
    public func run() async throws {
        // Records a previous publisher of this process left inflight (a new store resets them itself).
        // A replay-only publisher beside a running gateway must not touch the gateway's inflight records.
        if configuration.drainPending { try await returnToPending([]) }
        if configuration.acceptReplayRequests { sink.acceptReplayRequests() }
        let sink = self.sink
        let inbox = self.inbox
        let flushInterval = configuration.flushInterval
        await withTaskGroup(of: Void.self) { group in
            // Fed before it starts: the sink's callbacks yield straight into this publisher's input.
            let unhandled = unhandledEvents
            sink.feed(inbox, in: &group, events: { event in
                unhandled.value.add(1, ordering: .relaxed)
                return .sink(event)
            }, tick: .tick, every: flushInterval)
            sink.start()
            defer { group.cancelAll() }
            receiving: while true {
                let batch = await inbox.next()
                if batch.isEmpty || Task.isCancelled { break }
                for next in batch {
                    do { try await handle(next) } catch {
                        logger.error("publisher step failed; retrying on the next tick", metadata: ["error": "\(error)"])
                    }
                    if Task.isCancelled { break receiving }
                }
            }
        }
        try? await flush()
        let open = inflight.values.filter { !$0.isReplay }.map(\.recordID)
        inflight.removeAll()
        if !open.isEmpty { _ = try? await returnToPending(open) }
        try? await returnClaimed()
        await sink.shutdown()
    }

    // MARK: - Events

    private func handle(_ next: Input) async throws {
        if case .sink = next { unhandledEvents.value.subtract(1, ordering: .relaxed) }
        switch next {
        case .sink(.connected(let s)):
            session = s
            counters.connections += 1
            if configuration.drainPending && !inflight.values.contains(where: { !$0.isReplay }) {
                // Nothing of ours is in flight, so no record should be inflight in the store either; this
                // returns any that an earlier failed release left behind (claimed ones included).
                claimed.removeAll()
                claimedHead = 0
                try await returnToPending([])
            }
            // Never more than libmosquitto may send (its send maximum) or the broker will take (Receive Maximum).
            window = max(1, min(configuration.window, sink.maxInflight, s.receiveMaximum ?? Int.max))
            logger.info("\(sink.name) connected", metadata: ["session": "\(s.id)", "protocol": "\(s)", "window": "\(window)"])
            try await fill()
        case .sink(.disconnected(let id, let reason)):
            if session?.id == id { session = nil }
            try await flush()
            let lost = inflight.filter { $0.key.session == id }
            for key in lost.keys { inflight[key] = nil }
            let ids = lost.values.filter { !$0.isReplay }.map(\.recordID)
            if !ids.isEmpty {
                let n = try await returnToPending(ids)
                counters.returnedToPending += Int64(n)
            }
            // Claimed and never sent: back to pending too, so that the next connection sends in store order.
            try await returnClaimed()
            logger.warning("\(sink.name) disconnected; unacknowledged records return to pending",
                           metadata: ["session": "\(id)", "reason": "\(reason)", "returned": "\(ids.count)"])
        case .sink(.acknowledged(let ticket, let refusal)):
            guard let entry = inflight.removeValue(forKey: ticket) else { return }
            if entry.isReplay {
                counters.replayAcknowledged += 1
            } else if let refusal {
                // The pause runs from the refusal's arrival, not from the end of the store calls below.
                refusedUntil = clock.now + configuration.refusalPause
                logger.warning("\(sink.name) refused a record; it stays pending",
                               metadata: ["record": "\(entry.recordID)", "refusal": "\(refusal)"])
                try await returnToPending([entry.recordID])
                // The records claimed after it wait in the store, so that it goes first again after the pause.
                try await returnClaimed()
                counters.refused += 1
            } else {
                acknowledged.append(entry.recordID)
            }
            // Half a claim batch (or window) of PUBACKs, or nothing left in flight: commit, and refill in the same
            // store call. Otherwise the window is refilled from the claimed records without a store call, at the
            // end of a burst of PUBACKs (``unhandledEvents``) or once half empty; with none claimed and pending
            // records waiting, by committing and claiming in one call. With nothing pending, the tail of a burst is
            // committed when its last PUBACK came (or at the next tick), not one transaction per PUBACK.
            if acknowledged.count >= max(1, max(window, configuration.claimBatch) / 2) || inflight.isEmpty {
                try await flushAndFill()
            } else if claimedCount > 0 {
                let room = window - inflight.count
                if (unhandledEvents.value.load(ordering: .relaxed) == 0 && room >= max(1, window / 16)) || room >= window / 2 {
                    try await fill(claimingPending: false)
                }
            } else if pendingMayWait {
                try await flushAndFill()
            }
        case .sink(.replayRequest(let payload, let retained)):
            let decision = admitReplay(payload, retained: retained)
            reply(decision, payload: payload)
            if decision.outcome == .accepted || decision.outcome == .clipped { try await fill() }
        case .sink(.other):
            return
        case .appended:
            pendingMayWait = true
            if inflight.count <= window / 2 { try await fill() }
        case .replay(let request):
            logger.info("replay requested", metadata: ["meter": "\(request.meter)", "from": "\(request.seqs.lowerBound)", "to": "\(request.seqs.upperBound)"])
            replays.append(request)
            try await fill()
        case .tick:
            // A burst of requests whose replies were held back is reported once it has passed, even if none follows.
            if replyLimiter.suppressed > 0, case (true, let held) = replyLimiter.allow(now: clock.now), held > 0 {
                logger.warning("replay requests came faster than replies may go out; these got none",
                               metadata: ["replies_suppressed_before": "\(held)"])
            }
            try await flush()
            if pendingMayWait || claimedCount > 0 || !replays.isEmpty || clock.now - lastClaim >= Self.idleClaimInterval { try await fill() }
            counters.ticks += 1
        }
    }

    /// Commits the delivered state of acknowledged records, in one transaction.
    private func flush() async throws {
        guard !acknowledged.isEmpty else { return }
        let batch = acknowledged
        acknowledged.removeAll(keepingCapacity: true)
        do {
            let n = try await store.markDelivered(batch, at: Date())
            counters.delivered += Int64(n)
        } catch {
            // Kept for the next flush: the PUBACKs came, the records must not be sent again for nothing.
            acknowledged.insert(contentsOf: batch, at: 0)
            throw error
        }
    }

    /// ``flush()`` then ``fill()``: when both have work, the store marks the acknowledged records delivered and
    /// claims pending ones in one call (one transaction). Pending records are claimed only when some may wait
    /// (``pendingMayWait``): a PUBACK after the backlog emptied does not query the store for more.
    private func flushAndFill() async throws {
        guard pendingMayWait, claimedCount == 0, !acknowledged.isEmpty, let limit = pendingClaimLimit() else {
            try await flush()
            try await fill(claimingPending: pendingMayWait)
            return
        }
        let batch = acknowledged
        acknowledged.removeAll(keepingCapacity: true)
        lastClaim = clock.now
        let claimSize = max(limit, configuration.claimBatch)
        let outcome: DeliveredAndClaimed
        do {
            outcome = try await store.markDelivered(batch, at: Date(), thenClaim: claimSize)
        } catch {
            // Nothing was committed: kept for the next flush, as in ``flush()``.
            acknowledged.insert(contentsOf: batch, at: 0)
            throw error
        }
        counters.delivered += Int64(outcome.delivered)
        claimed = try outcome.claimed.get()
        claimedHead = 0
        if claimed.count < claimSize { pendingMayWait = false }
        try await hand(takeClaimed(limit), isReplay: false)
        try await fill(claimingPending: false)
    }

    /// How many pending records the next claim may take (nil: none now: no connection, a replay-only publisher,
    /// a full window, a refusal pause); replays keep at least half the room when both wait.
    private func pendingClaimLimit() -> Int? {
        guard session != nil, configuration.drainPending else { return nil }
        let room = window - inflight.count
        guard room > 0 else { return nil }
        if let until = refusedUntil, until > clock.now { return nil }
        let limit = room - (replaysReady ? max(1, room / 2) : 0)
        return limit > 0 ? limit : nil
    }

    /// Whether replays wait and the budget lets them go: they then keep half of the window's room.
    private var replaysReady: Bool { !replays.isEmpty && !replayBudgetSpent }

    /// Hands records to the sink until the window is full: pending first (unless `claimingPending` is false), replays
    /// in what is left (at least half the window when both wait, so neither starves).
    private func fill(claimingPending: Bool = true) async throws {
        guard session != nil else { return }
        var room = window - inflight.count
        guard room > 0 else { return }
        let replayShare = replaysReady ? max(1, room / 2) : 0
        if let until = refusedUntil, until > clock.now { return }
        refusedUntil = nil
        if configuration.drainPending {
            let limit = room - replayShare
            if limit > 0 && claimedCount == 0 && claimingPending {
                lastClaim = clock.now
                let claimSize = max(limit, configuration.claimBatch)
                claimed = try await store.claimPending(limit: claimSize)
                claimedHead = 0
                if claimed.count < claimSize { pendingMayWait = false }
            }
            if limit > 0 && claimedCount > 0 {
                try await hand(takeClaimed(limit), isReplay: false)
                room = window - inflight.count
            }
        }
        while room > 0, let cursor = replays.first, session != nil {
            let allowed = replays.allowance(room, now: clock.now)
            guard allowed > 0 else {
                if !replayBudgetSpent {
                    logger.warning("replay budget reached: replays continue as it refills",
                                   metadata: ["records_per_minute": "\(configuration.replayLimits.budgetPerMinute)", "queued": "\(replays.cursors.count)"])
                }
                replayBudgetSpent = true
                break
            }
            replayBudgetSpent = false
            guard let range = cursor.remaining else { replays.finishFirst(now: clock.now); continue }
            let records = try await store.records(meter: cursor.request.meter, seqs: range, limit: allowed)
            let delivered = records.filter { $0.state == .delivered }
            replays.spend(delivered.count)
            let end = max(range.lowerBound, records.last?.seq ?? range.upperBound)
            // Seqs looked at without a delivered record to send: saturating, a range may be as long as UInt64 allows.
            let covered = min(end - range.lowerBound, UInt64(Int64.max - 1)) + 1
            replaySkipped = replaySkipped.addingReportingOverflow(Int64(covered) - Int64(delivered.count)).partialValue
            try await hand(delivered, isReplay: true)
            let finished: Bool
            if records.isEmpty {
                replays.finishFirst(now: clock.now)
                finished = true
            } else {
                finished = replays.advanceFirst(past: end, now: clock.now)
            }
            if finished { logger.info("replay handed to \(sink.name)", metadata: ["request": "\(cursor.request)", "skipped_total": "\(replaySkipped)"]) }
            room = window - inflight.count
        }
    }

    /// Returns records to pending in the store (an empty list: every inflight record) and notes that there is
    /// pending work again.
    @discardableResult
    private func returnToPending(_ ids: [Int64]) async throws -> Int {
        pendingMayWait = true
        return try await store.releaseInflight(ids)
    }

    /// The next `count` (at most) claimed records, oldest first.
    private func takeClaimed(_ count: Int) -> [OutboxRecord] {
        let end = min(claimed.count, claimedHead + max(0, count))
        let taken = Array(claimed[claimedHead..<end])
        claimedHead = end
        if claimedHead == claimed.count {
            claimed.removeAll(keepingCapacity: true)
            claimedHead = 0
        }
        return taken
    }

    /// Returns the claimed records not yet handed to the sink to pending.
    private func returnClaimed() async throws {
        guard claimedCount > 0 else { return }
        let ids = claimed[claimedHead...].map(\.id)
        claimed.removeAll()
        claimedHead = 0
        try await returnToPending(ids)
    }

    /// Sends records; those that cannot be handed over (the connection just dropped) go back to pending.
    private func hand(_ records: [OutboxRecord], isReplay: Bool) async throws {
        for (index, record) in records.enumerated() {
            do {
                let ticket = try sink.send(meter: record.meter, bytes: record.bytes)
                inflight[ticket] = Inflight(recordID: record.id, isReplay: isReplay)
                counters.maxInflight = max(counters.maxInflight, inflight.count)
                if isReplay { counters.replayed += 1 } else { counters.published += 1 }
            } catch {
                if !isReplay {
                    let rest = records[index...].map(\.id)
                    try await returnToPending(rest)
                    try await returnClaimed()
                }
                return
            }
        }
    }
}
