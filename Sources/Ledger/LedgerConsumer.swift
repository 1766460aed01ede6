import Foundation
import Delivery
import Logging
import MQTT
import MeterCore
import Signing

/// What the consumer subscribes to and how it asks for replays.
public struct LedgerConsumerConfiguration: Sendable {
    /// The gateway to follow, or `+` for all.
    public var gateway: String
    /// An MQTT v5 shared-subscription group: consumers in one group split the readings between them.
    public var shareGroup: String?
    /// The keys trusted, per gateway (rotations on the keys topics are followed) and for every gateway.
    public var trust: TrustFollower
    /// Records whose interval starts more than this after the ledger's clock are rejected (a gateway's clock
    /// cannot run ahead of settlement's by more than this).
    public var maximumClockSkew: Duration
    /// Whether a stream is expected from seq 1 (ask for everything before the first seq seen).
    public var backfillFromFirstSeq: Bool
    public var replay: ReplayPolicy
    /// How often due replay requests are considered.
    public var tickInterval: Duration
    /// This process's name in the database's replay claims: ledger processes sharing a database ask for a gap
    /// once between them, whoever holds the claim.
    public var claimant: String

    public init(gateway: String = "+", shareGroup: String? = nil, trust: TrustFollower, backfillFromFirstSeq: Bool = true,
                replay: ReplayPolicy = ReplayPolicy(), tickInterval: Duration = .milliseconds(100), maximumClockSkew: Duration = .seconds(300),
                claimant: String = "ledger-\(getpid())-\(UInt32.random(in: 0...UInt32.max))") {
        self.claimant = claimant
        self.gateway = gateway
        self.shareGroup = shareGroup
        self.trust = trust
        self.maximumClockSkew = maximumClockSkew
        self.backfillFromFirstSeq = backfillFromFirstSeq
        self.replay = replay
        self.tickInterval = tickInterval
    }

    /// The readings filter, with the `$share/GROUP/` prefix when a group is set.
    public var readingFilter: String {
        let filter = "metergate/v1/\(gateway)/+/reading"
        return shareGroup.map { "$share/\($0)/\(filter)" } ?? filter
    }

    /// The keys filter: never shared, every consumer needs every announcement.
    public var keysFilter: String { "metergate/v1/\(gateway)/keys" }
}

/// The reference settlement consumer: subscribes, verifies each record, stores it in the ledger (dropping
/// duplicates, recording forks), and asks the gateway to replay the gaps until they are filled.
public actor LedgerConsumer {
    public struct Counters: Sendable, Hashable {
        public var received: Int64 = 0
        public var stored: Int64 = 0
        public var duplicates: Int64 = 0
        public var forks: Int64 = 0
        public var chainBreaks: Int64 = 0
        /// Payloads that failed verification or did not match their topic (kept in the ledger's `rejected` table).
        public var rejected: Int64 = 0
        public var replayRequests: Int64 = 0
        /// Stored readings signed while their gateway's clock was not synchronised (`clock: unsynced`).
        public var unsyncedClock: Int64 = 0
        /// Stored readings stating, signed, that the meter behind their stream was replaced (`replaced`).
        public var meterReplacements: Int64 = 0
    }

    private enum Input: Sendable {
        case mqtt(MQTTEvent)
        case tick
    }

    public nonisolated let configuration: LedgerConsumerConfiguration
    private let store: any LedgerStorage
    private let client: MQTTClient
    private let logger: Logger
    private var trust: TrustFollower
    /// Readings signed by a key not trusted yet, held until their gateway's keys topic has been read.
    private var waiting: [MQTTMessage] = []
    private var waitingBytes = 0
    private var scheduler: ReplayScheduler
    /// The newest epoch seen of each (gateway, meter): only its gaps can be asked for (cmd/replay names no epoch).
    private var currentEpoch: [String: String] = [:]
    private let started = ContinuousClock.now
    static let maximumWaiting = 10_000
    static let maximumWaitingBytes = 16 << 20
    public private(set) var counters = Counters()
    /// Verified readings waiting to be stored together in one transaction: at most ``batchLimit``, at most one
    /// tick old. What the broker delivered was acknowledged on arrival either way.
    private var pending: [LedgerEntry] = []
    static let batchLimit = 256
    /// The batch being stored while the next one is verified: at most one at a time, so batches reach the
    /// database in the order they were received.
    private var storing: Task<Void, Never>?
    /// SUBACKs received: the readings (and keys) filters are in place once this reaches the number of filters.
    public private(set) var subscriptionsAcknowledged = 0

    public init(store: any LedgerStorage, client: MQTTClient, configuration: LedgerConsumerConfiguration,
                logger: Logger = Logger(label: "metergate.ledger")) {
        self.store = store
        self.client = client
        self.configuration = configuration
        self.logger = logger
        self.trust = configuration.trust
        self.scheduler = ReplayScheduler(policy: configuration.replay)
    }

    /// The gaps being asked for, by stream.
    public var openGaps: [StreamKey: [ClosedRange<UInt64>]] { scheduler.openGaps }

    /// Subscribes and runs until the task is cancelled or the client's events end; shuts the client down.
    public func run() async {
        // Keys first: their retained announcements (rotations) arrive before the readings they concern.
        if trust.followsAnnouncements { client.subscribe(configuration.keysFilter, qos: .atLeastOnce) }
        client.subscribe(configuration.readingFilter, qos: .atLeastOnce)
        await resumeGaps()
        client.start()
        let inbox = BatchInbox<Input>()
        let client = self.client
        let tick = configuration.tickInterval
        await withTaskGroup(of: Void.self) { group in
            client.feed(inbox, in: &group, events: { .mqtt($0) }, tick: .tick, every: tick)
            receiving: while true {
                let batch = await inbox.next()
                if batch.isEmpty || Task.isCancelled { break }
                for next in batch {
                    switch next {
                    case .mqtt(let event): await handle(event)
                    case .tick:
                        await flush()
                        await sendDueReplays()
                    }
                    if Task.isCancelled { break receiving }
                }
            }
            group.cancelAll()
        }
        await flush()
        await storing?.value
        await client.shutdown()
        // Readings still waiting for a key are kept; the seqs they held show up as gaps on the next run.
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for message in waiting { await reject(message, reason: "signed by a key not trusted for its gateway (no rotation statement arrived)", now: now) }
        waiting.removeAll()
        waitingBytes = 0
    }

    /// Gaps left open by an earlier run are asked for again (for each meter's newest epoch).
    private func resumeGaps() async {
        let streams: [StreamKey]
        do { streams = try await store.latestStreams() } catch {
            logger.error("could not read the ledger's streams; earlier gaps are asked for when their meters send again", metadata: ["error": "\(error)"])
            return
        }
        for stream in streams where configuration.gateway == "+" || configuration.gateway == stream.gateway {
            currentEpoch["\(stream.gateway)/\(stream.meter)"] = stream.epoch
            let gaps: [ClosedRange<UInt64>]
            do { gaps = try await store.gaps(of: stream, fromFirstSeq: configuration.backfillFromFirstSeq) } catch {
                logger.error("could not read a stream's seqs; its gaps are asked for when its meter sends again", metadata: ["stream": "\(stream)", "error": "\(error)"])
                continue
            }
            if !gaps.isEmpty { logger.info("asking again for gaps left open", metadata: ["stream": "\(stream)", "gaps": "\(gaps)"]) }
            scheduler.update(stream: stream, gaps: gaps, now: elapsed)
        }
    }

    private var elapsed: Duration { ContinuousClock.now - started }

    private func handle(_ event: MQTTEvent) async {
        switch event {
        case .message(let message) where message.topic.hasSuffix("/keys"):
            let parts = message.topic.split(separator: "/")
            guard parts.count == 4 else { return }
            let outcome = trust.announcement(message.text, gateway: String(parts[2]), nowMillis: Int64(Date().timeIntervalSince1970 * 1000))
            for entry in outcome.learned {
                if case .rotation(let statement) = entry.origin {
                    logger.notice("trusting a rotated key", metadata: ["gateway": "\(parts[2])", "kid": "\(entry.key.keyID)", "signed_by": "\(statement.previousKeyID)"])
                }
            }
            for reason in outcome.ignored { logger.warning("keys announcement: \(reason)", metadata: ["topic": "\(message.topic)"]) }
            if let problem = outcome.saveError { logger.error("could not save the trust store", metadata: ["error": "\(problem)"]) }
            let pending = waiting
            waiting.removeAll()
            waitingBytes = 0
            for message in pending { await ingest(message) }
        case .message(let message):
            await ingest(message)
        case .connectFailed(let error, _):
            logger.warning("broker connection failed", metadata: ["error": "\(error)"])
        case .subscribed(_, _, let granted):
            subscriptionsAcknowledged += 1
            if granted.contains(where: { $0 >= 0x80 }) {
                logger.error("the broker refused a subscription", metadata: ["filter": "\(configuration.readingFilter)", "granted": "\(granted)"])
            } else {
                logger.info("subscribed", metadata: ["count": "\(subscriptionsAcknowledged)"])
            }
        default:
            break
        }
    }

    private func ingest(_ message: MQTTMessage) async {
        counters.received += 1
        let now = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        let verified: VerifiedRecord
        switch trust.verifier.verify(message.payload) {
        case .failure(let failure):
            if failure.kind == .unknownKey, trust.followsAnnouncements, let claimed = failure.claimed,
               !trust.announced.contains(claimed.gateway.rawValue) {
                await hold(message, now: now)
                return
            }
            await reject(message, reason: failure.description, now: now)
            return
        case .success(let v):
            verified = v
        }
        let r = verified.record
        if r.startMillis > now + Int64(configuration.maximumClockSkew.components.seconds) * 1000 {
            await reject(message, reason: "the interval starts at \(r.startMillis) ms, more than \(configuration.maximumClockSkew) after the ledger's clock (\(now) ms)", now: now)
            return
        }
        guard MeterGateTopics(gateway: r.gateway.rawValue).meter(ofReadingTopic: message.topic) == r.meter.rawValue else {
            await reject(message, reason: "the record is for \(r.gateway)/\(r.meter) but arrived on \(message.topic)", now: now)
            return
        }
        pending.append(LedgerEntry(verified, envelope: message.payload, receivedMillis: now))
        if pending.count >= Self.batchLimit { await flush() }
    }

    /// Hands the pending readings to the store, once the batch before them is stored; returns without waiting,
    /// so that verification goes on while the database commits.
    private func flush() async {
        guard !pending.isEmpty else { return }
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        await storing?.value
        storing = Task { await self.save(batch) }
    }

    /// Stores readings in one transaction, then counts, logs and updates the gaps of their streams.
    private func save(_ batch: [LedgerEntry]) async {
        let outcomes: [LedgerOutcome]
        do { outcomes = try await store.add(batch) } catch {
            for entry in batch {
                let r = entry.verified.record
                logger.error("could not store a verified reading; it will be asked for again as a gap", metadata: ["stream": "\(r.stream)", "seq": "\(r.seq)", "error": "\(error)"])
            }
            return
        }
        var touched = Set<StreamKey>()
        for (entry, outcome) in zip(batch, outcomes) {
            let r = entry.verified.record
            switch outcome {
            case .duplicate:
                counters.duplicates += 1
            case .fork:
                counters.forks += 1
                logger.error("fork: a different record under a stored key; the stored one is kept", metadata: ["stream": "\(r.stream)", "seq": "\(r.seq)"])
            case .stored(let problems):
                counters.stored += 1
                if r.clock == .unsynced {
                    counters.unsyncedClock += 1
                    logger.warning("a reading signed while the gateway's clock was not synchronised: its interval times are the gateway's word",
                                   metadata: ["stream": "\(r.stream)", "seq": "\(r.seq)"])
                }
                if let replaced = r.replacement {
                    counters.meterReplacements += 1
                    logger.notice("the gateway states, signed, that the meter was replaced", metadata: [
                        "stream": "\(r.stream)", "seq": "\(r.seq)", "old": "\(replaced.old)", "new": "\(replaced.new)",
                        "old_import_mwh": "\(replaced.oldImport.rawValue)", "new_import_mwh": "\(replaced.newImport.rawValue)",
                    ])
                }
                if r.sourceIdentity == .mismatch {
                    logger.warning("a reading of a meter that is not the one commissioned", metadata: ["stream": "\(r.stream)", "seq": "\(r.seq)", "source": "\(r.sourceID)"])
                }
                counters.chainBreaks += Int64(problems.count)
                for problem in problems { logger.error("chain broken", metadata: ["stream": "\(r.stream)", "problem": "\(problem)"]) }
                if let lost = r.storeLost {
                    // Kept in the ledger's stated_lost table (unless the record's link is broken); never asked for again.
                    logger.warning("the gateway states, signed, that its store lost these seqs; they are not asked for",
                                   metadata: ["stream": "\(r.stream)", "seq": "\(r.seq)", "store_lost": "\(lost)"])
                }
                noteEpoch(of: r)
                touched.insert(r.stream)
            }
        }
        await updateGaps(of: touched)
    }

    /// A new epoch of a meter: the gateway's store was replaced, and its old epoch's gaps can no longer be asked for.
    private func noteEpoch(of r: ReadingRecord) {
        let key = "\(r.gateway)/\(r.meter)"
        if let current = currentEpoch[key], current != r.epoch {
            let old = StreamKey(gateway: r.gateway.rawValue, meter: r.meter.rawValue, epoch: current)
            if let gaps = scheduler.openGaps[old] {
                logger.error("meter moved to a new epoch with gaps left in the old one", metadata: ["stream": "\(old)", "gaps": "\(gaps)"])
            }
            scheduler.remove(stream: old)
        }
        currentEpoch[key] = r.epoch
    }

    /// In a shared group this process sees part of each stream: the store also counts the stored neighbours of
    /// each record, and a gap is read again from the database before it is asked for (sendDueReplays).
    private func updateGaps(of streams: Set<StreamKey>) async {
        let current = streams.filter { currentEpoch["\($0.gateway)/\($0.meter)"] == $0.epoch }
        do {
            for (stream, gaps) in try await store.gaps(of: current, fromFirstSeq: configuration.backfillFromFirstSeq) {
                scheduler.update(stream: stream, gaps: gaps, now: elapsed)
            }
        } catch {
            logger.error("could not read the streams' seqs; their gaps are looked at again with their next readings", metadata: ["error": "\(error)"])
        }
    }

    /// Holds a reading until its gateway's keys topic was read, within a bound in count and bytes: the oldest
    /// held reading is rejected to make room.
    private func hold(_ message: MQTTMessage, now: Int64) async {
        counters.received -= 1   // counted again when it is taken
        while !waiting.isEmpty && (waiting.count >= Self.maximumWaiting || waitingBytes + message.payload.count > Self.maximumWaitingBytes) {
            let oldest = waiting.removeFirst()
            waitingBytes -= oldest.payload.count
            counters.received += 1
            await reject(oldest, reason: "signed by a key not trusted for its gateway, and no keys announcement came while it waited", now: now)
        }
        waiting.append(message)
        waitingBytes += message.payload.count
    }

    private func reject(_ message: MQTTMessage, reason: String, now: Int64) async {
        counters.rejected += 1
        logger.error("rejected a reading", metadata: ["topic": "\(message.topic)", "reason": "\(reason)"])
        do { try await store.reject(topic: message.topic, payload: message.payload, reason: reason, receivedMillis: now) } catch {
            logger.error("could not keep a rejected payload", metadata: ["error": "\(error)"])
        }
    }

    private func sendDueReplays() async {
        guard client.currentSession != nil, scheduler.hasDue(now: elapsed) else { return }
        // A gap may be filled by the batch being stored.
        await storing?.value
        while let due = scheduler.next(now: elapsed) {
            if configuration.shareGroup != nil, !(await stillOpenAndClaimed(due)) { continue }
            let topic = MeterGateTopics(gateway: due.gateway).replayRequests
            do {
                _ = try client.publish(MQTTMessage(topic: topic, payload: due.request.json, qos: .atLeastOnce))
                counters.replayRequests += 1
                logger.info("asked for a replay", metadata: ["gateway": "\(due.gateway)", "request": "\(due.request)", "attempt": "\(due.attempt + 1)"])
            } catch {
                // Marked as sent anyway: it is asked for again after the retry interval.
                logger.warning("could not send a replay request", metadata: ["request": "\(due.request)", "error": "\(error)"])
            }
        }
    }

    /// In a shared group, before asking: the gap is read again from the database (another process may have stored
    /// it), and asked for only by the process that takes its claim, held for one retry interval.
    private func stillOpenAndClaimed(_ due: ScheduledReplay) async -> Bool {
        do {
            let gaps = try await store.refreshedGaps(of: due.stream, fromFirstSeq: configuration.backfillFromFirstSeq)
            scheduler.update(stream: due.stream, gaps: gaps, now: elapsed)
            guard gaps.contains(where: { $0.overlaps(due.request.seqs) }) else { return false }
            let now = Int64((Date().timeIntervalSince1970 * 1000).rounded())
            let hold = configuration.replay.retryInterval.components
            let until = now + hold.seconds * 1000 + hold.attoseconds / 1_000_000_000_000_000
            let claimed = try await store.claimReplay(of: due.stream, seqs: due.request.seqs, by: configuration.claimant, nowMillis: now, untilMillis: until)
            if !claimed { logger.debug("another ledger process asked for this gap", metadata: ["stream": "\(due.stream)", "seqs": "\(due.request.seqs)"]) }
            return claimed
        } catch {
            // Asked for anyway: a second request costs a replay, a missed one costs a reading.
            logger.warning("could not read or claim a gap in the database; asking for it", metadata: ["stream": "\(due.stream)", "error": "\(error)"])
            return true
        }
    }
}
