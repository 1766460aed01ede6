import Synchronization

/// When each polled source (a meter, a rail) last delivered a sample, so that `/health` names every source that
/// has gone silent, not only a gateway where none answers. S0 inputs are not in it: a pulse input is silent
/// whenever nothing is drawn. Times are passed in, so tests advance them.
public final class SourceLiveness: Sendable {
    private let lastSeen: Mutex<[String: ContinuousClock.Instant]>
    private let started: ContinuousClock.Instant
    /// How long each source may be silent before it is named (three of its polls and 10 s).
    public let thresholds: [String: Duration]

    public init(thresholds: [String: Duration], now: ContinuousClock.Instant = .now) {
        self.thresholds = thresholds
        self.started = now
        self.lastSeen = Mutex([:])
    }

    /// A sample of `source` arrived.
    public func saw(_ source: String, at now: ContinuousClock.Instant = .now) {
        lastSeen.withLock { $0[source] = now }
    }

    /// The sources silent for longer than their threshold (counted from the start when never heard), by id,
    /// with how long they have been silent.
    public func silent(now: ContinuousClock.Instant = .now) -> [(source: String, silentFor: Duration)] {
        let seen = lastSeen.withLock { $0 }
        return thresholds.keys.sorted().compactMap { source in
            let silence = now - (seen[source] ?? started)
            return silence > thresholds[source]! ? (source, silence) : nil
        }
    }
}
