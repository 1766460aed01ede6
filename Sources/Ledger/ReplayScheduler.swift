import Delivery
import Signing

/// How eagerly the ledger asks for missing records.
public struct ReplayPolicy: Sendable, Hashable {
    /// A gap must stay open this long before the first request: QoS 1 may deliver a little out of order.
    public var settleDelay: Duration
    /// A gap still open this long after its last request is asked for again.
    public var retryInterval: Duration
    /// At most one request per this spacing, over all streams (rate limit).
    public var minimumSpacing: Duration
    /// A longer gap is asked for in pieces of this many seqs, lowest first.
    public var maximumRange: UInt64

    public init(settleDelay: Duration = .seconds(1), retryInterval: Duration = .seconds(10),
                minimumSpacing: Duration = .milliseconds(200), maximumRange: UInt64 = 5_000) {
        self.settleDelay = settleDelay
        self.retryInterval = retryInterval
        self.minimumSpacing = minimumSpacing
        self.maximumRange = maximumRange
    }
}

/// One request to send: the gateway whose `cmd/replay` topic gets it, and the request.
public struct ScheduledReplay: Sendable, Hashable {
    /// The stream whose gap this asks for (the request itself names no epoch).
    public var stream: StreamKey
    public var gateway: String
    public var request: ReplayRequest
    /// How many times this gap has been asked for before (0 for the first request).
    public var attempt: Int
}

/// Decides when to request which gap: pure logic over a caller-supplied time, so it is tested without
/// timing. The caller reports each stream's open gaps after every change and asks for due requests on a tick.
///
/// A `cmd/replay` request names no epoch (the gateway replays its current one), so only the newest epoch
/// of each (gateway, meter) is asked about; the caller passes gaps for that stream only.
public struct ReplayScheduler: Sendable {
    struct OpenGap: Sendable, Hashable {
        var seqs: ClosedRange<UInt64>
        var firstSeen: Duration
        var lastRequest: Duration?
        var attempts: Int
    }

    public let policy: ReplayPolicy
    private var gaps: [StreamKey: [OpenGap]] = [:]
    private var lastSent: Duration?

    public init(policy: ReplayPolicy = ReplayPolicy()) { self.policy = policy }

    /// Replaces the open gaps of `stream`. A gap that overlaps one already known keeps its history, so a
    /// gap that is partly filled is not asked for again at once.
    public mutating func update(stream: StreamKey, gaps newGaps: [ClosedRange<UInt64>], now: Duration) {
        let old = gaps[stream] ?? []
        let merged = newGaps.map { seqs in
            old.first { $0.seqs.overlaps(seqs) }.map { OpenGap(seqs: seqs, firstSeen: $0.firstSeen, lastRequest: $0.lastRequest, attempts: $0.attempts) }
                ?? OpenGap(seqs: seqs, firstSeen: now, lastRequest: nil, attempts: 0)
        }
        gaps[stream] = merged.isEmpty ? nil : merged
    }

    /// Forgets a stream (e.g. its meter moved to a new epoch).
    public mutating func remove(stream: StreamKey) { gaps[stream] = nil }

    /// The open gaps, by stream.
    public var openGaps: [StreamKey: [ClosedRange<UInt64>]] { gaps.mapValues { $0.map(\.seqs) } }

    /// The next request to send at `now`, if any is due and the rate limit allows; marks it sent.
    public mutating func next(now: Duration) -> ScheduledReplay? {
        guard let best = mostOverdue(now: now) else { return nil }
        var gap = gaps[best.stream]![best.index]
        let upper = min(gap.seqs.upperBound, gap.seqs.lowerBound + policy.maximumRange - 1)
        let scheduled = ScheduledReplay(stream: best.stream, gateway: best.stream.gateway,
                                        request: ReplayRequest(meter: best.stream.meter, seqs: gap.seqs.lowerBound...upper),
                                        attempt: gap.attempts)
        gap.lastRequest = now
        gap.attempts += 1
        gaps[best.stream]![best.index] = gap
        lastSent = now
        return scheduled
    }

    /// Whether ``next(now:)`` would give a request now.
    public func hasDue(now: Duration) -> Bool { mostOverdue(now: now) != nil }

    /// The most overdue gap first, so one busy stream cannot starve the others; none while the rate limit holds.
    private func mostOverdue(now: Duration) -> (stream: StreamKey, index: Int, dueAt: Duration)? {
        if let lastSent, now - lastSent < policy.minimumSpacing { return nil }
        var best: (stream: StreamKey, index: Int, dueAt: Duration)?
        for (stream, list) in gaps {
            for (i, gap) in list.enumerated() {
                let dueAt = gap.lastRequest.map { $0 + policy.retryInterval } ?? gap.firstSeen + policy.settleDelay
                guard dueAt <= now else { continue }
                if best == nil || dueAt < best!.dueAt || (dueAt == best!.dueAt && stream < best!.stream) { best = (stream, i, dueAt) }
            }
        }
        return best
    }
}
