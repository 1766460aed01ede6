import Foundation

/// How much replaying a gateway does for requests arriving over MQTT: `cmd/replay` comes from the network, so
/// what it may cost is bounded (DESIGN.md, Trust: broker access is not trust).
public struct ReplayLimits: Sendable, Hashable {
    /// The most records one request re-publishes; a longer range is clipped.
    public var maximumRecordsPerRequest: UInt64
    /// Records re-published per minute over all requests; past it, replays pause until the budget refills.
    public var budgetPerMinute: UInt64
    /// Requests queued at once; more are refused.
    public var maximumQueued: Int
    /// A range replayed less than this long ago is not replayed again (merged).
    public var repeatWindow: Duration
    /// Replies on `replay/result` (and warnings in the log) per second; past it they are counted, not sent.
    public var repliesPerSecond: Int

    public init(maximumRecordsPerRequest: UInt64 = 10_000, budgetPerMinute: UInt64 = 60_000, maximumQueued: Int = 64,
                repeatWindow: Duration = .seconds(10), repliesPerSecond: Int = 20) {
        self.maximumRecordsPerRequest = max(1, maximumRecordsPerRequest)
        self.budgetPerMinute = max(1, budgetPerMinute)
        self.maximumQueued = max(1, maximumQueued)
        self.repeatWindow = repeatWindow
        self.repliesPerSecond = max(1, repliesPerSecond)
    }

    /// No bounds: for an operator's own `metergate replay`, which does not come from the network.
    public static let unbounded = ReplayLimits(maximumRecordsPerRequest: UInt64(Int64.max), budgetPerMinute: UInt64(Int64.max) / 2,
                                               maximumQueued: Int.max, repeatWindow: .zero, repliesPerSecond: 1)
}

/// What became of one replay request: sent back on `replay/result`.
public struct ReplayDecision: Sendable, Hashable, CustomStringConvertible {
    public enum Outcome: String, Sendable, Hashable {
        /// Queued as asked.
        case accepted
        /// Queued in part (`seqs`): the rest was too long, or already queued or just replayed.
        case clipped
        /// Nothing new to queue: the range is queued already or was replayed within the repeat window.
        case merged
        /// Not queued (`reason` says why).
        case refused
    }

    public var outcome: Outcome
    public var meter: String?
    /// The range queued (accepted, clipped), or the range asked for (merged, refused) when it could be read.
    public var seqs: ClosedRange<UInt64>?
    public var reason: String?

    public var description: String {
        "\(outcome.rawValue)\(meter.map { " \($0)" } ?? "")\(seqs.map { " seq \($0.lowerBound)...\($0.upperBound)" } ?? "")\(reason.map { ": \($0)" } ?? "")"
    }

    /// The reply's JSON: `{"outcome","meter","from","to","reason"}` (members present when known).
    public var json: [UInt8] {
        struct Reply: Encodable { var outcome: String; var meter: String?; var from: UInt64?; var to: UInt64?; var reason: String? }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let reply = Reply(outcome: outcome.rawValue, meter: meter, from: seqs?.lowerBound, to: seqs?.upperBound, reason: reason)
        return (try? Array(encoder.encode(reply))) ?? Array("{\"outcome\":\"\(outcome.rawValue)\"}".utf8)
    }
}

/// The replays waiting to be served, with what bounds them: the per-request cap, merging of overlapping and
/// recently served ranges, the queue length and a budget of records per minute (a token bucket). Pure: the
/// caller passes the time, so tests (and the fuzz target) advance it instead of sleeping.
public struct ReplayQueue: Sendable {
    public struct Cursor: Sendable {
        public var request: ReplayRequest
        /// The next seq to re-publish; past `request.seqs.upperBound` when done.
        public var next: UInt64
        public var remaining: ClosedRange<UInt64>? { next <= request.seqs.upperBound ? next...request.seqs.upperBound : nil }
    }

    public let limits: ReplayLimits
    public private(set) var cursors: [Cursor] = []
    private var recent: [(meter: String, seqs: ClosedRange<UInt64>, at: ContinuousClock.Instant)] = []
    private var tokens: Double
    private var refilled: ContinuousClock.Instant

    public init(limits: ReplayLimits, now: ContinuousClock.Instant) {
        self.limits = limits
        self.tokens = Double(limits.budgetPerMinute)
        self.refilled = now
    }

    public var isEmpty: Bool { cursors.isEmpty }
    public var first: Cursor? { cursors.first }

    /// Records still to re-publish (an upper bound: gaps are skipped), saturating instead of overflowing.
    public var remaining: UInt64 {
        cursors.reduce(UInt64(0)) { sum, cursor in
            guard let range = cursor.remaining else { return sum }
            let (count, overflow) = (range.upperBound - range.lowerBound).addingReportingOverflow(1)
            let (total, overflow2) = sum.addingReportingOverflow(count)
            return overflow || overflow2 ? .max : total
        }
    }

    /// Decides what to queue for `request`; `knownMeters` nil accepts any meter.
    public mutating func admit(_ request: ReplayRequest, knownMeters: Set<String>?, now: ContinuousClock.Instant) -> ReplayDecision {
        forgetOld(now: now)
        if let knownMeters, !knownMeters.contains(request.meter) {
            return ReplayDecision(outcome: .refused, meter: request.meter, seqs: request.seqs, reason: "no meter '\(request.meter)' on this gateway")
        }
        var reasons: [String] = []
        var wanted = request.seqs
        let cap = limits.maximumRecordsPerRequest
        if wanted.upperBound - wanted.lowerBound >= cap {
            wanted = wanted.lowerBound...(wanted.lowerBound + (cap - 1))
            reasons.append("at most \(cap) records a request")
        }
        var covered = cursors.filter { $0.request.meter == request.meter }.compactMap(\.remaining)
        covered += recent.filter { $0.meter == request.meter }.map(\.seqs)
        let uncovered = Self.subtract(covered, from: wanted)
        guard let piece = uncovered.first else {
            return ReplayDecision(outcome: .merged, meter: request.meter, seqs: wanted,
                                  reason: "already queued, or replayed less than \(limits.repeatWindow) ago")
        }
        if piece != wanted || uncovered.count > 1 { reasons.append("part already queued or just replayed") }
        guard cursors.count < limits.maximumQueued else {
            return ReplayDecision(outcome: .refused, meter: request.meter, seqs: request.seqs,
                                  reason: "\(cursors.count) requests are queued (the most is \(limits.maximumQueued)); ask again later")
        }
        cursors.append(Cursor(request: ReplayRequest(meter: request.meter, seqs: piece), next: piece.lowerBound))
        return ReplayDecision(outcome: reasons.isEmpty ? .accepted : .clipped, meter: request.meter, seqs: piece,
                              reason: reasons.isEmpty ? nil : reasons.joined(separator: "; "))
    }

    /// Queues a request without bounds (an operator's own replay).
    public mutating func append(_ request: ReplayRequest) {
        cursors.append(Cursor(request: request, next: request.seqs.lowerBound))
    }

    /// Records the budget allows now, at most `wanted`.
    public mutating func allowance(_ wanted: Int, now: ContinuousClock.Instant) -> Int {
        let elapsed = now - refilled
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if seconds > 0 {
            tokens = min(Double(limits.budgetPerMinute), tokens + seconds * Double(limits.budgetPerMinute) / 60)
            refilled = now
        }
        return max(0, min(wanted, Int(min(tokens, Double(Int.max / 2)))))
    }

    /// Takes `count` records off the budget.
    public mutating func spend(_ count: Int) { tokens = max(0, tokens - Double(count)) }

    /// Moves the first cursor on to the seq after `last` (or ends it); returns true when it ended.
    public mutating func advanceFirst(past last: UInt64, now: ContinuousClock.Instant) -> Bool {
        guard var cursor = cursors.first else { return true }
        if last >= cursor.request.seqs.upperBound {
            finishFirst(now: now)
            return true
        }
        cursor.next = last + 1
        cursors[0] = cursor
        return false
    }

    /// Ends the first cursor, remembering its range for the repeat window.
    public mutating func finishFirst(now: ContinuousClock.Instant) {
        guard !cursors.isEmpty else { return }
        let done = cursors.removeFirst()
        if limits.repeatWindow > .zero {
            recent.append((done.request.meter, done.request.seqs, now))
            if recent.count > 256 { recent.removeFirst(recent.count - 256) }
        }
    }

    private mutating func forgetOld(now: ContinuousClock.Instant) {
        let window = limits.repeatWindow
        recent.removeAll { now - $0.at >= window }
    }

    /// `range` less every range in `covered`, as ascending pieces.
    static func subtract(_ covered: [ClosedRange<UInt64>], from range: ClosedRange<UInt64>) -> [ClosedRange<UInt64>] {
        var pieces = [range]
        for cut in covered {
            pieces = pieces.flatMap { piece -> [ClosedRange<UInt64>] in
                guard cut.overlaps(piece) else { return [piece] }
                var out: [ClosedRange<UInt64>] = []
                if cut.lowerBound > piece.lowerBound { out.append(piece.lowerBound...(cut.lowerBound - 1)) }
                if cut.upperBound < piece.upperBound { out.append((cut.upperBound + 1)...piece.upperBound) }
                return out
            }
        }
        return pieces.sorted { $0.lowerBound < $1.lowerBound }
    }
}

/// At most `perSecond` events a second (a token bucket of one second's worth); the rest are counted.
struct RateLimiter {
    let perSecond: Int
    private var tokens: Double
    private var refilled: ContinuousClock.Instant
    /// Events refused since the last one allowed.
    private(set) var suppressed = 0

    init(perSecond: Int, now: ContinuousClock.Instant) {
        self.perSecond = perSecond
        self.tokens = Double(perSecond)
        self.refilled = now
    }

    /// Whether one more event may go now; when it may, `suppressed` holds how many did not before it.
    mutating func allow(now: ContinuousClock.Instant) -> (allowed: Bool, suppressedBefore: Int) {
        let elapsed = now - refilled
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(Double(perSecond), tokens + max(0, seconds) * Double(perSecond))
        refilled = now
        guard tokens >= 1 else {
            suppressed += 1
            return (false, 0)
        }
        tokens -= 1
        defer { suppressed = 0 }
        return (true, suppressed)
    }
}
