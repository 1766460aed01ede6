import Dispatch
import MeterCore

/// One meter as the bus poller sees it.
public struct PolledMeter: Sendable {
    public var id: MeterID
    public var unit: Int
    public var profile: MeterProfile
    public var period: Duration
    /// The quantities to read (nil: every value in the profile).
    public var quantities: Set<Quantity>?
    /// How often the meter's identity is read again while it answers (it is also read at the first answer, after
    /// a failure, and when its import counter went backwards).
    public var identityRefresh: Duration

    public init(id: MeterID, unit: Int, profile: MeterProfile, period: Duration, quantities: Set<Quantity>? = nil,
                identityRefresh: Duration = .seconds(300)) {
        self.id = id
        self.unit = unit
        self.profile = profile
        self.period = period
        self.quantities = quantities
        self.identityRefresh = identityRefresh
    }
}

/// Pauses and limits of one bus.
public struct BusTiming: Sendable, Hashable {
    /// Pause between two frames on the line (RTU: at least 3.5 characters; 0 on TCP).
    public var interFrameDelay: Duration
    /// Pause when the next request goes to another unit id (mbmd sleeps 200 ms; some SDMs need one).
    public var unitSwitchDelay: Duration
    /// Whether to honour the profiles' `inter_request_delay` (RS-485 lines; a TCP meter needs none).
    public var profileDelays: Bool
    /// The longest a failing meter waits before it is tried again.
    public var maximumBackoff: Duration

    public init(interFrameDelay: Duration = .zero, unitSwitchDelay: Duration = .zero, profileDelays: Bool = false,
                maximumBackoff: Duration = .seconds(60)) {
        self.interFrameDelay = interFrameDelay
        self.unitSwitchDelay = unitSwitchDelay
        self.profileDelays = profileDelays
        self.maximumBackoff = maximumBackoff
    }

    /// Sensible pauses for a transport: RTU lines get the 3.5-character gap and a unit-switch pause.
    public static func defaults(for transport: ModbusTransport) -> BusTiming {
        switch transport {
        case .tcp: return BusTiming()
        case .rtu(let s):
            return BusTiming(interFrameDelay: RTUFraming.interFrameGap(s), unitSwitchDelay: .milliseconds(20), profileDelays: true)
        }
    }
}

/// When each meter on a bus is due: the per-meter period, and capped exponential back-off for failures.
///
/// A pure state machine (no clock, no I/O), so the scheduling rules are unit-testable: a meter that
/// answers is due one period after its last due time (missed slots are skipped, never bunched up);
/// a meter that fails waits period × 2^(failures − 1), capped, so a dead device costs at most one
/// timeout per attempt and is tried less and less often.
public struct PollSchedule: Sendable {
    public struct Entry: Sendable {
        public var period: Duration
        public var due: ContinuousClock.Instant
        public var consecutiveFailures: Int
    }
    public private(set) var entries: [Entry]
    public let maximumBackoff: Duration

    public init(periods: [Duration], start: ContinuousClock.Instant, maximumBackoff: Duration) {
        entries = periods.map { Entry(period: $0, due: start, consecutiveFailures: 0) }
        self.maximumBackoff = maximumBackoff
    }

    /// The meter due first (ties: the lower index, so meters keep their configured order).
    public func next() -> (index: Int, due: ContinuousClock.Instant)? {
        guard let i = entries.indices.min(by: { (entries[$0].due, $0) < (entries[$1].due, $1) }) else { return nil }
        return (i, entries[i].due)
    }

    /// Records a good poll of meter `i` that finished at `now`.
    public mutating func succeeded(_ i: Int, now: ContinuousClock.Instant) {
        entries[i].consecutiveFailures = 0
        var due = entries[i].due.advanced(by: entries[i].period)
        if due <= now {
            // Late (a slow line): skip the missed slots and keep the phase.
            let missed = (now - entries[i].due) / entries[i].period
            due = entries[i].due.advanced(by: entries[i].period * (Int(missed.rounded(.down)) + 1))
        }
        entries[i].due = due
    }

    /// Records a failed poll of meter `i` at `now`; returns how long it now waits.
    @discardableResult
    public mutating func failed(_ i: Int, now: ContinuousClock.Instant) -> Duration {
        entries[i].consecutiveFailures += 1
        let wait = backoff(period: entries[i].period, failures: entries[i].consecutiveFailures)
        entries[i].due = now.advanced(by: wait)
        return wait
    }

    /// period × 2^(failures − 1), at most `maximumBackoff` (and never less than one period).
    public func backoff(period: Duration, failures: Int) -> Duration {
        var wait = period
        for _ in 1..<max(failures, 1) {
            wait = wait * 2
            if wait >= maximumBackoff { return max(maximumBackoff, period) }
        }
        return min(wait, max(maximumBackoff, period))
    }
}

/// What happened in one poll of one meter.
public enum PollEvent: Sendable {
    /// The meter answered: its sample, how many requests it took, and its identity when it was read in this poll.
    case sample(Sample, unit: Int, requests: Int, refused: [ModbusError], identity: IdentityReading?)
    /// The meter did not answer (or a SunSpec model was not found); it waits `retryIn` before the next try.
    case failure(MeterID, unit: Int, error: MeterPollError, consecutive: Int, retryIn: Duration)
}

/// Why a poll failed.
public enum MeterPollError: Error, Sendable, CustomStringConvertible {
    case modbus(ModbusError)
    /// SunSpec discovery did not find the model the profile is for.
    case sunspecModelMissing(wanted: Int, found: [Int])

    public var description: String {
        switch self {
        case .modbus(let e): return e.description
        case .sunspecModelMissing(let wanted, let found):
            return "no SunSpec model \(wanted) on the device (models found: \(found.isEmpty ? "none" : found.map(String.init).joined(separator: ", ")))"
        }
    }
}

/// When a meter's identity is read: at its first answer, after a failure (a reconnect, a run of timeouts), when
/// its import counter went backwards, and every `refresh` while it answers.
struct IdentityWatch {
    let refresh: Duration
    private var lastRead: ContinuousClock.Instant?
    private var stale = true
    private var lastImport: Double?

    init(refresh: Duration) { self.refresh = refresh }

    /// After a failed identity read, not before this (a meter that answers values but not its identity costs one
    /// extra request per ``identityRetry``, not per poll).
    private var retryAt: ContinuousClock.Instant?
    static let identityRetry = Duration.seconds(30)

    func isDue(now: ContinuousClock.Instant) -> Bool {
        if let retryAt, now < retryAt { return false }
        return stale || lastRead.map { now - $0 >= refresh } ?? true
    }

    mutating func identityFailed(at now: ContinuousClock.Instant) { retryAt = now + Self.identityRetry }

    /// Whether `importValue` is below the last one seen (and remembers it).
    mutating func wentBackwards(_ importValue: Double?) -> Bool {
        defer { if let importValue { lastImport = importValue } }
        guard let importValue, let lastImport else { return false }
        return importValue < lastImport
    }

    mutating func read(at now: ContinuousClock.Instant) {
        lastRead = now
        stale = false
        retryAt = nil
    }

    mutating func failed() { stale = true }
}

/// A task executor on a dispatch queue of its own: tasks that prefer it run their nonisolated code there,
/// never waiting for a thread of the cooperative pool.
///
/// Sendable without `@unchecked`: the only state is an immutable, thread-safe `DispatchQueue`.
public final class QueueTaskExecutor: TaskExecutor {
    private let queue: DispatchQueue

    public init(label: String) { queue = DispatchQueue(label: label) }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// Polls the meters of one bus, one request at a time, each on its own period.
///
/// All units of a bus share one ``RegisterReader`` (one libmodbus context) and are read strictly one after
/// another: an RS-485 line carries one frame at a time, and so should a TCP gateway that fronts several unit
/// ids. Different buses get different pollers and run concurrently.
///
/// The poll loop is isolated to this actor, which runs on a serial dispatch queue of its own: it waits
/// between polls by blocking that queue's thread (a semaphore with a deadline, signalled on cancellation),
/// and the libmodbus calls run on the connection's queue; actor-to-actor hops between the two need no
/// cooperative-pool thread. (`Task.sleep` and continuation resumes do: measured, a blocked pool stopped a
/// poller that slept with them.) So neither a slow consumer nor a starved pool delays a poll: events go
/// through an unbounded stream to `onEvent`, which may lag but loses nothing. They go in batches, one per
/// burst of polls (at most ``maximumEventDelay`` late): one wake-up of the consumer per burst, not per poll.
public actor BusPoller {
    public nonisolated let meters: [PolledMeter]
    public nonisolated let timing: BusTiming
    private let reader: any RegisterReader
    private let time: any TimeSource
    /// When meters are due, back-off, identity refreshes and event batching: the loop's own clock.
    private let clock: any PollClock
    private let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    /// Signalled to cut a sleep short when the poll loop is cancelled.
    private let wake = DispatchSemaphore(value: 0)

    /// - Parameter executor: the queue to run the poll loop on; pass the connection's
    ///   (``ModbusConnection/serialExecutor``) so that each request needs no thread switch. Nil: a queue of
    ///   the poller's own.
    /// - Parameter clock: when meters are due and how the loop waits (a test steps a manual one); `time` stamps samples.
    public init(meters: [PolledMeter], reader: any RegisterReader, timing: BusTiming, time: any TimeSource = SystemTimeSource(),
                clock: any PollClock = SystemPollClock(), executor: SerialQueueExecutor? = nil) {
        self.meters = meters
        self.reader = reader
        self.timing = timing
        self.time = time
        self.clock = clock
        self.executor = executor ?? SerialQueueExecutor(label: "metergate.modbus.poller")
    }

    /// Starts ``run(shouldStop:onEvent:)`` in a task that prefers the poller's own task executor, so not even
    /// the start, nor `onEvent`, waits for a thread of the cooperative pool. Cancel the task to stop polling.
    public nonisolated func start(shouldStop: @escaping @Sendable () -> Bool = { false },
                                  onEvent: @escaping @Sendable (PollEvent) async -> Void) -> Task<Void, Never> {
        Task(executorPreference: taskExecutor) { await self.run(shouldStop: shouldStop, onEvent: onEvent) }
    }

    /// The executor that tasks serving this bus prefer (see ``start(shouldStop:onEvent:)``).
    public nonisolated let taskExecutor = QueueTaskExecutor(label: "metergate.modbus.poller-tasks")

    /// Polls until the task is cancelled (or `shouldStop` says so), reporting each poll to `onEvent`.
    ///
    /// The loop runs on the poller's queue as a task of its own that prefers the poller's task executor (it
    /// inherits the caller's task-local values, such as the graceful-shutdown flag), so even its start needs
    /// no thread of the cooperative pool. Events are handed to `onEvent` on the caller's executor, not the
    /// poller's: the loop keeps its queue's thread between polls (it sleeps there), and a shared connection
    /// queue never suspends it. Cancelling the caller cancels the loop; every event is delivered before returning.
    public nonisolated func run(shouldStop: @escaping @Sendable () -> Bool = { false }, onEvent: @Sendable (PollEvent) async -> Void) async {
        let (events, continuation) = AsyncStream.makeStream(of: [PollEvent].self)
        let wake = self.wake
        let loop = Task(executorPreference: taskExecutor) {
            await withTaskCancellationHandler {
                await self.loop(shouldStop: shouldStop, emit: continuation)
            } onCancel: {
                wake.signal()
            }
            continuation.finish()
        }
        await withTaskCancellationHandler {
            for await batch in events {
                for event in batch { await onEvent(event) }
            }
        } onCancel: {
            loop.cancel()
        }
    }

    /// The longest an event waits in the poller before it goes to the consumer (see ``EventBatch``).
    static let maximumEventDelay = Duration.milliseconds(100)

    /// The events of one burst of polls (every meter due at the same moment), handed to the consumer in one
    /// go when the loop is about to wait for the next due meter, or once the oldest has waited
    /// ``maximumEventDelay``: the consumer's thread wakes once per burst instead of once per poll.
    struct EventBatch {
        let emit: AsyncStream<[PollEvent]>.Continuation
        private var events: [PollEvent] = []
        private var since: ContinuousClock.Instant?

        init(_ emit: AsyncStream<[PollEvent]>.Continuation) { self.emit = emit }

        mutating func add(_ event: PollEvent, now: ContinuousClock.Instant) {
            events.append(event)
            let first = since ?? now
            since = first
            if now - first >= BusPoller.maximumEventDelay { flush() }
        }

        mutating func flush() {
            guard !events.isEmpty else { return }
            emit.yield(events)
            events.removeAll(keepingCapacity: true)
            since = nil
        }
    }

    private func loop(shouldStop: @Sendable () -> Bool, emit: AsyncStream<[PollEvent]>.Continuation) async {
        var schedule = PollSchedule(periods: meters.map(\.period), start: clock.now, maximumBackoff: timing.maximumBackoff)
        var readers: [MeterReader?] = meters.map { $0.profile.sunspecModel == nil ? MeterReader(profile: $0.profile, quantities: $0.quantities) : nil }
        var identities = meters.map { IdentityWatch(refresh: $0.identityRefresh) }
        var lastUnit: Int?
        var batch = EventBatch(emit)
        defer { batch.flush() }
        while !Task.isCancelled && !shouldStop() {
            guard let (i, due) = schedule.next() else { return }
            if due > clock.now {
                batch.flush()
                pause(until: due)
            }
            if Task.isCancelled || shouldStop() { break }
            let meter = meters[i]
            if let last = lastUnit, last != meter.unit, timing.unitSwitchDelay > .zero {
                pause(timing.unitSwitchDelay)
            } else if lastUnit != nil, timing.interFrameDelay > .zero {
                pause(timing.interFrameDelay)
            }
            lastUnit = meter.unit
            let stamp = time.now()
            do throws(MeterPollError) {
                var identity: IdentityReading?
                let identityDue = identities[i].isDue(now: clock.now)
                // A SunSpec device names itself in its common model, read again with its discovery.
                if meter.profile.sunspecModel != nil, identityDue { readers[i] = nil }
                if readers[i] == nil { (readers[i], identity) = try await locate(meter) }
                let pause = max(timing.interFrameDelay, timing.profileDelays ? meter.profile.interRequestDelay : .zero)
                let readout: MeterReader.Readout
                do {
                    readout = try await readers[i]!.read(unit: meter.unit, from: reader, pause: pause) { [self] in self.pause($0) }
                } catch { throw .modbus(error) }
                // Stamped at the middle of the read, not its start: a request that waited for the bus or a busy
                // machine would otherwise date its counter too early and shift energy between intervals.
                let readAt = stamp.midpoint(to: time.now())
                // A counter that went backwards may be another meter: its identity is read before the sample goes out.
                let backwards = identities[i].wentBackwards(readout.values[.energyImport])
                if identity == nil, meter.profile.offersIdentity, identityDue || backwards {
                    // The values are good: a failed identity read costs this poll its identity, never its sample (the
                    // accounting then judges a step as it would without identities); it is tried again shortly.
                    do throws(MeterPollError) {
                        identity = try await readIdentity(meter, reader: &readers[i], pause: pause)
                    } catch {
                        identities[i].identityFailed(at: clock.now)
                        if meter.profile.sunspecModel != nil { readers[i] = nil }
                    }
                }
                if identity != nil { identities[i].read(at: clock.now) }
                schedule.succeeded(i, now: clock.now)
                batch.add(.sample(Sample(meter: meter.id, time: readAt, values: readout.values), unit: meter.unit,
                                  requests: readout.requests, refused: readout.refused, identity: identity), now: clock.now)
            } catch {
                identities[i].failed()
                // A SunSpec device is discovered again after a failure: it may have been replaced.
                if meter.profile.sunspecModel != nil { readers[i] = nil }
                let wait = schedule.failed(i, now: clock.now)
                batch.add(.failure(meter.id, unit: meter.unit, error: error,
                                   consecutive: schedule.entries[i].consecutiveFailures, retryIn: wait), now: clock.now)
            }
        }
    }

    /// Waits on the poller's own queue: blocking here holds this bus's thread only, never a cooperative-pool
    /// thread, and the wake-up needs no pool thread either. Cancellation signals `wake` to end it early.
    private func pause(_ d: Duration) {
        guard d > .zero else { return }
        pause(until: clock.now + d)
    }

    private func pause(until deadline: ContinuousClock.Instant) {
        guard !Task.isCancelled else { return }
        clock.wait(until: deadline, wake: wake)
    }

    /// Finds a SunSpec meter's model block and places the profile there; the device's identity comes with it.
    private func locate(_ meter: PolledMeter) async throws(MeterPollError) -> (MeterReader, IdentityReading?) {
        guard let wanted = meter.profile.sunspecModel else { return (MeterReader(profile: meter.profile, quantities: meter.quantities), nil) }
        let device: SunSpecDevice?
        do { device = try await SunSpecDiscovery.discover(unit: meter.unit, reader: reader) } catch { throw .modbus(error) }
        guard let device, let model = device.models.first(where: { $0.id == wanted }) else {
            throw .sunspecModelMissing(wanted: wanted, found: device?.models.map(\.id) ?? [])
        }
        return (MeterReader(profile: meter.profile.located(at: model.address), quantities: meter.quantities), device.identityReading)
    }

    /// Reads the meter's identity: its identity registers, or a SunSpec device's discovery again (which also
    /// places its model block anew). A timeout fails the poll; the identity is then read at the next answer.
    private func readIdentity(_ meter: PolledMeter, reader located: inout MeterReader?, pause pauseBetween: Duration) async throws(MeterPollError) -> IdentityReading? {
        pause(pauseBetween)
        if meter.profile.sunspecModel != nil {
            let (found, identity) = try await locate(meter)
            located = found
            return identity
        }
        guard meter.profile.identity != nil else { return nil }
        do { return try await meter.profile.readIdentity(unit: meter.unit, from: reader) } catch { throw .modbus(error) }
    }
}
