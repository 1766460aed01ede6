import Accounting
import Foundation
import Logging
import Metrics
import MeterCore
import Modbus
import Outbox
import PowerRails
import Signing
import Synchronization

/// Samples in, signed records out: for each meter stream, accounting turns counter readings into settlement
/// intervals, the signer turns each interval into a chained record, and the outbox appends it durably.
///
/// The accounting state is saved in the same outbox transaction as the records it produced, so that after a
/// crash or power cut the restored state and the stored records agree: no interval is signed twice, none is
/// lost, and the downtime becomes explicit gap intervals.
public actor ReadingPipeline {
    /// A stream's accounting: counters (meters, energy rails) or integrated power (power rails).
    enum Accountant {
        case counter(CounterAccountant)
        case power(PowerAccountant)

        mutating func tick(now: Timestamp) -> [AccountedInterval] {
            switch self {
            case .counter(var a): let closed = a.tick(now: now); self = .counter(a); return closed
            case .power(var a): let closed = a.tick(now: now); self = .power(a); return closed
            }
        }

        /// Whether the stream's energy lives only in this state (integrated power), not in a counter it can read again.
        var isIntegrating: Bool { if case .power = self { return true } else { return false } }

        /// The state as JSON for the outbox (read back with `JSONDecoder`); nil if it cannot be written.
        var encodedSnapshot: [UInt8]? {
            switch self {
            case .counter(let a): return a.snapshot().jsonBytes
            case .power(let a): return a.snapshot().jsonBytes
            }
        }
    }

    /// One stream's accounting and signing, and which meter answers it.
    struct Stream {
        var accountant: Accountant
        let signer: RecordSigner
        let identity: StreamSpecification.Identity?
        var provenance = Provenance()
    }

    var streams: [MeterID: Stream] = [:]
    /// Streams whose ``Provenance`` changed since it was last saved.
    var provenanceUnsaved: Set<MeterID> = []
    /// Meters whose answering serial is not the commissioned one (meter → what answered and what was expected).
    public internal(set) var identityAlarms: [String: String] = [:]
    private let store: any OutboxStore
    let logger: Logger
    private let appended: @Sendable () -> Void
    /// The wall clock's state, signed with each record (the kernel's, through adjtimex; injected in tests).
    private let clockState: @Sendable () -> ClockState
    /// Streams whose state changed since it was last saved.
    private var unsaved: Set<MeterID> = []
    private var lastSave: ContinuousClock.Instant
    /// The monotonic clock of the save and retry timers (injected: tests step it instead of sleeping).
    private let now: @Sendable () -> ContinuousClock.Instant
    /// Inputs (samples, readings, counts, ticks) taken and handled by ``run()``, for tests that wait for them.
    public private(set) var inputsHandled = 0
    /// Both clocks at the last tick, to notice wall-clock steps.
    private var lastTick: Timestamp?
    /// How often the state of streams whose energy lives only here (power rails integrated by the gateway) is saved
    /// when no interval closed (`outbox.state_save`): a crash loses at most this much of their energy. A counter
    /// stream's state is its counter (meters, energy rails, the pulse store): it is saved with its records and at
    /// shutdown only, and a crash costs the open interval's detail, never energy (the restart's interval is
    /// flagged). Rewriting every counter's state every few seconds was most of what a gateway wrote to flash.
    let saveInterval: Duration

    /// Per stream, the end (ms) of the last interval published before the outbox lost records it had already
    /// published (``OutboxRecovery``). The accounting state rolled back with the store, so the stream recomputes
    /// intervals up to here; they went out under seqs the store has left behind and are not signed again.
    private var publishedThrough: [MeterID: Int64] = [:]

    public private(set) var recordsAppended: Int64 = 0
    private var intervalCounters: [IntervalCounterKey: Counter] = [:]
    public private(set) var lastAppendError: String?

    /// Samples and ticks, handled one at a time in arrival order by ``run()``: accounting and appends of one
    /// stream never interleave. A bounded buffer: if the store stalls (disk full), the oldest samples go first,
    /// which loses detail but no energy (the counters carry it).
    enum Input: Sendable {
        case sample(Sample, IdentityReading?)
        case rail(MeterID, RailReading, Timestamp)
        case count(MeterID, UInt64, Timestamp)
        case tick(Timestamp)
    }
    private let input: AsyncStream<Input>
    private let inputContinuation: AsyncStream<Input>.Continuation
    /// Inputs queued and not yet taken by ``run()``. Records wait to be committed until it drops to zero, so a
    /// burst (every meter closing the same interval) is stored in one fsynced transaction, not one per meter.
    private nonisolated let queued = Atomic<Int>(0)
    /// Records of closed intervals not yet committed, and those intervals' meters and results.
    private var staged: [AppendRequest] = []
    private var stagedIntervals: [(meter: MeterID, interval: AccountedInterval)] = []
    /// At most this many records go into one transaction.
    static let maximumBatch = 256
    /// After a failed append (disk full), when the staged records are tried again at the earliest.
    private var retryAt: ContinuousClock.Instant?
    /// Streams whose records cannot be built (signed) now, with why: left out of the shared append, alarmed.
    public private(set) var blocked: [String: String] = [:]
    private var leftOut: Set<String> = []
    private var blockedRetryAt: ContinuousClock.Instant?
    static let blockedRetryDelay = Duration.seconds(30)
    static let retryDelay = Duration.seconds(1)

    /// The outbox key under which a meter's accounting state is saved.
    static func stateKey(_ meter: MeterID) -> String { "accounting/\(meter)" }

    /// Builds one stream per configured meter, pulse input and rail (``GatewayConfig/streamSpecifications(grid:rails:)``).
    public init(config: GatewayConfig, key: SigningKey, store: any OutboxStore, bootID: String?, logger: Logger,
                rails: [(source: RailsConfig.Source, rail: RailDescription)] = [], recoveries: [OutboxRecovery] = [],
                clockState: @escaping @Sendable () -> ClockState = { KernelClock.state() },
                now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
                appended: @escaping @Sendable () -> Void) async throws {
        let grid = try IntervalGrid(periodMillis: Self.millis(config.interval))
        try await self.init(gateway: config.gateway, streams: config.streamSpecifications(grid: grid, rails: rails), key: key,
                            selfCheck: config.signing.selfCheck, stateSave: config.outbox.stateSave, store: store, bootID: bootID,
                            logger: logger, recoveries: recoveries, clockState: clockState, now: now, appended: appended)
    }

    /// Builds one stream per specification, restoring saved accounting state where there is some that fits.
    /// - Parameter recoveries: streams the outbox continued from its high-water mark when it was opened
    ///   (``OutboxOpenReport/recoveries``): their intervals up to the mark's interval end are not signed again.
    public init(gateway: GatewayID, streams specifications: [StreamSpecification], key: SigningKey, selfCheck: Bool, stateSave: Duration,
                store: any OutboxStore, bootID: String?, logger: Logger, recoveries: [OutboxRecovery] = [],
                clockState: @escaping @Sendable () -> ClockState = { KernelClock.state() },
                now: @escaping @Sendable () -> ContinuousClock.Instant = { .now },
                appended: @escaping @Sendable () -> Void) async throws {
        self.store = store
        self.clockState = clockState
        self.now = now
        self.lastSave = now()
        for recovery in recoveries {
            if let end = recovery.intervalEnd, let meter = try? MeterID(validating: recovery.meter) { publishedThrough[meter] = end }
        }
        self.logger = logger
        self.appended = appended
        self.saveInterval = stateSave
        (input, inputContinuation) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .bufferingNewest(4096))
        for specification in specifications {
            let saved = try await store.savedState(Self.stateKey(specification.id))
            let accountant = Self.accountant(specification, saved: saved, bootID: bootID, logger: logger)
            let signer = try RecordSigner(gateway: gateway, meter: specification.id, sourceID: specification.sourceID,
                                          envelope: specification.envelope, key: key, selfCheck: selfCheck)
            var stream = Stream(accountant: accountant, signer: signer, identity: specification.identity)
            if specification.identity != nil {
                stream.provenance = Self.provenance(specification.id, saved: try await store.savedState(Self.provenanceKey(specification.id)), logger: logger)
                if stream.provenance.mismatch, let found = stream.provenance.identity {
                    identityAlarms[specification.id.rawValue] = Self.mismatchText(found, specification.identity)
                }
            }
            streams[specification.id] = stream
        }
    }

    /// A stream's accountant: restored from its saved state when there is some that fits the specification, else new.
    /// A changed interval, profile or rail makes old state meaningless: the stream's accounting starts afresh (the chain
    /// continues; the first interval is a gap), and the log says why.
    static func accountant(_ specification: StreamSpecification, saved: [UInt8]?, bootID: String?, logger: Logger) -> Accountant {
        let decoder = AccountingState.decoder()
        do {
            switch specification.accounting {
            case .counter(let configuration):
                guard let saved else { return .counter(CounterAccountant(configuration: configuration, bootID: bootID)) }
                let snapshot = try decoder.decode(CounterAccountant.Snapshot.self, from: Data(saved))
                let restored = Accountant.counter(try CounterAccountant(configuration: configuration, restoring: snapshot, bootID: bootID))
                logger.info("restored accounting state", metadata: ["meter": "\(specification.id)"])
                return restored
            case .power(let settings):
                guard let saved else { return .power(PowerAccountant(settings: settings, bootID: bootID)) }
                let snapshot = try decoder.decode(PowerAccountant.Snapshot.self, from: Data(saved))
                let restored = Accountant.power(try PowerAccountant(settings: settings, restoring: snapshot, bootID: bootID))
                logger.info("restored accounting state", metadata: ["meter": "\(specification.id)"])
                return restored
            }
        } catch {
            logger.warning("saved accounting state does not fit the config; starting afresh",
                           metadata: ["meter": "\(specification.id)", "reason": "\(error)"])
            switch specification.accounting {
            case .counter(let configuration): return .counter(CounterAccountant(configuration: configuration, bootID: bootID))
            case .power(let settings): return .power(PowerAccountant(settings: settings, bootID: bootID))
            }
        }
    }

    /// Queues a pulse counter's current total.
    public nonisolated func submit(count: UInt64, of meter: MeterID, at time: Timestamp) {
        enqueue(.count(meter, count, time))
    }

    /// Queues one input, counting it in ``queued`` unless the buffer dropped it (or an older one) or has ended.
    private nonisolated func enqueue(_ next: Input) {
        queued.add(1, ordering: .relaxed)
        switch inputContinuation.yield(next) {
        case .enqueued: break
        case .dropped, .terminated: queued.subtract(1, ordering: .relaxed)
        @unknown default: break
        }
    }

    /// Feeds a pulse counter's total (S0 inputs: the count the input's store kept across restarts).
    func accept(count: UInt64, of meter: MeterID, at time: Timestamp) {
        guard var stream = streams[meter], case .counter(var accountant) = stream.accountant else { return }
        let closed: [AccountedInterval]
        do {
            closed = try accountant.add(CounterAccountant.Reading(time: time, importCount: count))
        } catch {
            logger.warning("pulse count refused by accounting", metadata: ["meter": "\(meter)", "error": "\(error)"])
            return
        }
        stream.accountant = .counter(accountant)
        streams[meter] = stream
        unsaved.insert(meter)
        stage(closed, of: meter)
    }

    /// Queues one rail reading.
    public nonisolated func submit(rail meter: MeterID, reading: RailReading, at time: Timestamp) {
        enqueue(.rail(meter, reading, time))
    }

    /// Feeds one rail reading: an energy counter or a power value.
    func accept(rail meter: MeterID, reading: RailReading, at time: Timestamp) {
        guard var stream = streams[meter] else { return }
        let closed: [AccountedInterval]
        do {
            switch (stream.accountant, reading) {
            case (.counter(var a), .energy(let microjoules)):
                closed = try a.add(CounterAccountant.Reading(time: time, importCount: microjoules))
                stream.accountant = .counter(a)
            case (.counter(var a), .power):
                // An NVML GPU that lost its energy counter: no counter reading to pay; keep the stream alive.
                closed = a.tick(now: time)
                stream.accountant = .counter(a)
            case (.power(var a), .power(let microwatts)):
                closed = try a.add(PowerAccountant.Reading(time: time, powerWatts: Double(microwatts) / 1_000_000))
                stream.accountant = .power(a)
            case (.power(var a), .energy):
                closed = a.tick(now: time)
                stream.accountant = .power(a)
            }
        } catch {
            logger.warning("rail reading refused by accounting", metadata: ["meter": "\(meter)", "error": "\(error)"])
            return
        }
        streams[meter] = stream
        unsaved.insert(meter)
        stage(closed, of: meter)
    }

    /// Queues one poll's sample, with the meter's identity when the poll read it (cheap, never blocks the poller).
    public nonisolated func submit(_ sample: Sample, identity: IdentityReading? = nil) { enqueue(.sample(sample, identity)) }

    /// Queues a tick (closes silent intervals, saves state now and then).
    public nonisolated func submitTick(_ now: Timestamp) { enqueue(.tick(now)) }

    /// Ends the input; ``run()`` then saves every stream's state and returns.
    public nonisolated func finish() { inputContinuation.finish() }

    /// Handles queued samples and ticks in order until ``finish()``, then saves all state. The records of
    /// the intervals they close are committed when no more input is queued (or ``maximumBatch`` wait).
    public func run() async {
        for await next in input {
            queued.subtract(1, ordering: .relaxed)
            inputsHandled += 1
            switch next {
            case .sample(let sample, let identity): accept(sample, identity: identity)
            case .rail(let meter, let reading, let time): accept(rail: meter, reading: reading, at: time)
            case .count(let meter, let count, let time): accept(count: count, of: meter, at: time)
            case .tick(let now): await tick(now: now)
            }
            if staged.count >= Self.maximumBatch || (!staged.isEmpty && queued.load(ordering: .relaxed) <= 0) { await commit() }
        }
        await flush()
    }

    /// The values of a meter's sample that records are made of, and so all that a poll reads (``MeterConfig/polled``):
    /// the counters and the power. Voltages, currents and the rest would cost bus time and decoding for nothing.
    public static let sampledQuantities: Set<Quantity> = [.energyImport, .energyExport, .power]

    /// Feeds one poll's sample; stages the records of any interval it closed. A new identity is noted first: a
    /// different meter's first reading becomes the new baseline, with a signed replacement statement.
    func accept(_ sample: Sample, identity: IdentityReading? = nil) {
        guard var stream = streams[sample.meter], case .counter(var accountant) = stream.accountant else { return }
        // A counter beyond 10^15 Wh (a million GWh) is a damaged register, not energy: refused, never converted
        // (the conversion to an integer count would trap).
        let plausible = { (wh: Double) in wh.isFinite && wh >= 0 && wh < 1e15 }
        guard let importWh = sample.values[.energyImport] else { return }
        guard plausible(importWh) else {
            logger.warning("implausible energy counter refused", metadata: ["meter": "\(sample.meter)", "import_wh": "\(importWh)"])
            return
        }
        let exportWh = sample.values[.energyExport].flatMap { plausible($0) ? $0 : nil }
        let reading = CounterAccountant.Reading(
            time: sample.time, importCount: UInt64((importWh * 1000).rounded()),
            exportCount: accountant.configuration.hasExportCounter ? UInt64(((exportWh ?? 0) * 1000).rounded()) : nil,
            powerWatts: sample.values[.power])
        var rebasing = false
        if case .identified(let found)? = identity {
            rebasing = note(found, of: &stream, reading: reading, lastCounts: accountant.lastCounts)
        } else if case .notOffered(let why)? = identity, stream.provenance.notOfferedLogged != why {
            stream.provenance.notOfferedLogged = why
            let named = stream.identity?.configured == nil ? "its bus position" : "the configured serial"
            logger.info("the meter offers no identity; its records name \(named)",
                        metadata: ["meter": "\(sample.meter)", "reason": "\(why)"])
        }
        let closed: [AccountedInterval]
        do {
            closed = try accountant.add(reading, rebasing: rebasing)
            stream.accountant = .counter(accountant)
        } catch {
            logger.warning("reading refused by accounting", metadata: ["meter": "\(sample.meter)", "error": "\(error)"])
            // The identity noted stays: the next reading of the new meter is the baseline instead.
            if rebasing, var kept = streams[sample.meter] {
                kept.provenance = stream.provenance
                kept.provenance.pendingReplacement = nil
                streams[sample.meter] = kept
            }
            return
        }
        streams[sample.meter] = stream
        unsaved.insert(sample.meter)
        stage(closed, of: sample.meter)
    }

    /// Closes intervals of silent streams and saves state now and then. Call about once a second.
    func tick(now: Timestamp) async {
        // A wall-clock step is logged when it happens: after a step back, the interval that books the energy
        // (flagged with the step) closes only once the wall clock has caught up again.
        if let last = lastTick, let step = wallClockStep(from: last, to: now, toleranceNanos: 2_000_000_000) {
            logger.warning("wall clock stepped \(step > 0 ? "forward" : "back") relative to the monotonic clock", metadata: [
                "step_ms": "\(step / 1_000_000)", "wall_ms": "\(now.wallNanos / 1_000_000)",
            ])
            Counter(label: "metergate_clock_steps_total").increment()
        }
        lastTick = now
        for meter in streams.keys.sorted() {
            guard var stream = streams[meter] else { continue }
            let closed = stream.accountant.tick(now: now)
            streams[meter] = stream
            if !closed.isEmpty {
                unsaved.insert(meter)
                stage(closed, of: meter)
            }
        }
        let integrating = unsaved.contains { streams[$0]?.accountant.isIntegrating == true }
        if !staged.isEmpty || (integrating && self.now() - lastSave >= saveInterval) { await commit() }
    }

    /// Saves every stream's state (at shutdown).
    func flush() async {
        unsaved = Set(streams.keys)
        await commit(force: true)
    }

    /// Queues the records of `intervals` of `meter` for the next ``commit(force:)`` (signed there, in the outbox's
    /// transaction, where the stream position is known). Intervals the outbox had already published before it
    /// lost records (its high-water mark) are not signed again.
    private func stage(_ closed: [AccountedInterval], of meter: MeterID) {
        guard let signer = streams[meter]?.signer else { return }
        var intervals = closed
        if let through = publishedThrough[meter] {
            intervals.removeAll { $0.result.endMillis <= through }
            if intervals.count < closed.count {
                logger.notice("intervals already published before the outbox lost records are not signed again",
                              metadata: ["meter": "\(meter)", "dropped": "\(closed.count - intervals.count)", "published_through_ms": "\(through)"])
            }
        }
        let clock = intervals.isEmpty ? ClockState.unknown : clockState()
        for interval in intervals {
            var adjusted = interval.result
            let source = sourceStatement(meter, for: &adjusted)
            let result = adjusted
            staged.append(AppendRequest(meter: meter.rawValue, intervalEnd: result.endMillis, keyID: signer.keyID) { position in
                let signed = try signer.sign(result: result, position: position, clock: clock, source: source)
                return (signed.bytes, signed.hash)
            })
            stagedIntervals.append((meter, AccountedInterval(result: result, events: interval.events)))
            if result.quality != .measured {
                logger.notice("interval \(result.quality.rawValue)", metadata: [
                    "meter": "\(meter)", "start": "\(result.startMillis)", "events": "\(interval.events.map { "\($0)" }.joined(separator: ","))",
                ])
            }
        }
    }

    /// Signs and appends the staged records together with the state of every changed stream, in one
    /// transaction. On failure (disk full) nothing is stored, the records stay staged and go first in the next
    /// append (tried again after ``retryDelay``, or at once with `force`), and the state stays unsaved: a full
    /// disk delays readings instead of losing them, and after a restart they are re-derived from the last saved
    /// state and the counters.
    func commit(force: Bool = false) async {
        if !force, let retryAt, now() < retryAt { return }
        // Streams whose record could not be built are left out of the shared append (one meter never blocks the
        // others) and tried again with it every ``blockedRetryDelay``.
        if let at = blockedRetryAt, now() >= at { blockedRetryAt = nil; leftOut.removeAll() }
        let taken = staged.count
        for _ in 0...blocked.count + 8 {
            let chosen = (0..<taken).filter { !leftOut.contains(stagedIntervals[$0].meter.rawValue) }
            let requests = chosen.map { staged[$0] }, intervals = chosen.map { stagedIntervals[$0] }
            var state: [String: [UInt8]] = [:]
            // A left-out stream's state is not saved without its records: a restart produces them again from the last save.
            // Without records (a periodic save) only integrated streams' state is written: a counter's is its counter.
            let saving = unsaved.filter {
                !leftOut.contains($0.rawValue) && (force || !requests.isEmpty || streams[$0]?.accountant.isIntegrating == true)
            }
            for id in saving {
                guard let stream = streams[id], let bytes = stream.accountant.encodedSnapshot else { continue }
                state[Self.stateKey(id)] = bytes
            }
            let savingProvenance = provenanceUnsaved.filter { !leftOut.contains($0.rawValue) }
            for id in savingProvenance {
                guard let bytes = streams[id]?.provenance.encoded else { continue }
                state[Self.provenanceKey(id)] = bytes
            }
            guard !requests.isEmpty || !state.isEmpty else { return }
            do {
                let records = try await store.append(requests, saving: state)
                // Only what was appended leaves the queue: the actor may run other calls while the append is awaited.
                let kept = Set(0..<taken).subtracting(chosen)
                staged = kept.sorted().map { staged[$0] } + staged[taken...]
                stagedIntervals = kept.sorted().map { stagedIntervals[$0] } + stagedIntervals[taken...]
                unsaved.subtract(saving)
                provenanceUnsaved.subtract(savingProvenance)
                lastSave = now()
                lastAppendError = nil
                retryAt = nil
                for (meter, interval) in intervals {
                    intervalCounter(meter, interval.result.quality).increment()
                    publishedThrough[meter] = nil
                    if blocked.removeValue(forKey: meter.rawValue) != nil {
                        logger.notice("the stream's records are signed again", metadata: ["meter": "\(meter)"])
                    }
                }
                if !records.isEmpty {
                    recordsAppended += Int64(records.count)
                    logStored(records)
                    appended()
                }
                return
            } catch .recordBuilderFailed(let meter, let seq, let underlying) {
                leftOut.insert(meter)
                blocked[meter] = "seq \(seq): \(underlying)"
                blockedRetryAt = blockedRetryAt ?? now() + Self.blockedRetryDelay
                logger.error("a record of this stream cannot be signed; the stream waits (retried every \(Self.blockedRetryDelay)) and the others go on",
                             metadata: ["meter": "\(meter)", "seq": "\(seq)", "error": "\(underlying)"])
            } catch {
                lastAppendError = "\(error)"
                retryAt = now() + Self.retryDelay
                logger.error("could not store signed records; they wait in memory for the next append (after a restart they are produced again from the saved state)",
                             metadata: ["meters": "\(Set(intervals.map(\.meter)).sorted().map { "\($0)" }.joined(separator: ","))", "records": "\(requests.count)",
                                        "error": "\(error)"])
                return
            }
        }
    }

    /// `metergate_intervals_total` of `meter` and `quality`, made once (the metrics factory's lookup and the
    /// label strings cost more than the increment).
    private func intervalCounter(_ meter: MeterID, _ quality: Quality) -> Counter {
        let key = IntervalCounterKey(meter: meter, quality: quality)
        if let counter = intervalCounters[key] { return counter }
        let counter = Counter(label: "metergate_intervals_total", dimensions: [("meter", "\(meter)"), ("quality", quality.rawValue)])
        intervalCounters[key] = counter
        return counter
    }

    private struct IntervalCounterKey: Hashable {
        var meter: MeterID
        var quality: Quality
    }
}
