import MeterCore

/// A problem tied to one input line.
public struct LineIssue: Sendable, Hashable {
    /// 1-based line number in the input.
    public var line: Int
    public var seq: UInt64?
    public var reason: String
}

/// What the verifier found for one stream (gateway, meter, epoch).
public struct StreamReport: Sendable, Hashable {
    public var stream: StreamKey
    /// Records whose signature verified (every copy counted once per distinct record).
    public var verified: Int
    public var firstSeq: UInt64?
    public var lastSeq: UInt64?
    /// Missing seq ranges between the first and last verified record (and before the first one, if the
    /// input was declared to start at the beginning of the epoch) that no signed `store_lost` statement explains.
    public var gaps: [ClosedRange<UInt64>]
    /// Missing seq ranges that a verified record of the stream states, signed, its gateway's store lost
    /// (`store_lost`): explicit gaps, reported but not failing.
    public var statedLost: [ClosedRange<UInt64>] = []
    /// Seqs a `store_lost` statement names that the input holds all the same (published before the store
    /// lost them): fine, reported.
    public var statedLostReceived: [ClosedRange<UInt64>] = []
    /// The verified records carrying a `store_lost` statement that is in force.
    public var lossStatements: [LossStatement] = []
    /// The seq of each extra copy of an identical record.
    public var duplicates: [UInt64]
    /// Seqs with two or more different validly signed records.
    public var forks: [UInt64]
    /// Seqs that arrived after a higher seq of the same stream.
    public var reordered: [UInt64]
    /// Seqs whose `prev` is not the hash of the record before them (or not zero for seq 1).
    public var brokenLinks: [UInt64]
    /// Seqs where the key changed and the record named the previous key (a new chain segment): fine.
    public var keyRotations: [UInt64]
    /// Seqs where the key changed without naming the previous key id, or named a key that did not sign
    /// the previous record.
    public var keyProblems: [UInt64]
    public var tampered: [LineIssue]
    public var unknownKey: [LineIssue]
    /// Seqs signed while the gateway's clock was not synchronised (`clock: unsynced`): their interval times are
    /// the gateway's word only. Reported, not failing.
    public var unsyncedClock: [UInt64] = []
    /// The signed statements that the meter behind the stream was replaced (`replaced`), by the seq that carries them.
    public var replacements: [UInt64: MeterReplacement] = [:]
    /// Seqs signed while another meter than the commissioned one answered (`source.identity: mismatch`). Reported.
    public var identityMismatch: [UInt64] = []
    /// Duplicates and reordering are reported but do not fail the stream (a log of at-least-once
    /// deliveries and replays has both).
    public var toleratesRedelivery = false

    public var passed: Bool {
        gaps.isEmpty && forks.isEmpty && brokenLinks.isEmpty && keyProblems.isEmpty && tampered.isEmpty && unknownKey.isEmpty
            && (toleratesRedelivery || (duplicates.isEmpty && reordered.isEmpty))
    }
}

/// A verified record's signed statement that its gateway's store lost `seqs` (`store_lost`).
public struct LossStatement: Sendable, Hashable {
    /// The seq of the record that states the loss.
    public var statedBy: UInt64
    public var seqs: ClosedRange<UInt64>
    public var cause: StoreLoss.Cause

    public init(statedBy: UInt64, seqs: ClosedRange<UInt64>, cause: StoreLoss.Cause = .damage) {
        self.statedBy = statedBy
        self.seqs = seqs
        self.cause = cause
    }
}

/// The verdict over a whole input.
public struct VerificationReport: Sendable, Hashable {
    public var streams: [StreamReport]
    /// Lines that are not readable records at all (so belong to no stream).
    public var malformed: [LineIssue]
    /// Records read, valid or not.
    public var records: Int

    public var passed: Bool { malformed.isEmpty && streams.allSatisfy(\.passed) && records > 0 }
}

/// Follows every stream through a sequence of verified (or failed) records and finds gaps, duplicates,
/// forks, reordering, broken links and key changes. Feed records in input order.
public struct ChainAnalyzer: Sendable {
    /// A SHA-256 value held inline: no heap allocation per record, cheap to hash and compare.
    struct Digest: Hashable, Sendable {
        var words: (UInt64, UInt64, UInt64, UInt64)

        init(_ bytes: [UInt8]) {
            precondition(bytes.count == 32)
            func word(_ i: Int) -> UInt64 { bytes[i..<(i + 8)].reduce(0) { $0 << 8 | UInt64($1) } }
            words = (word(0), word(8), word(16), word(24))
        }

        static func == (a: Digest, b: Digest) -> Bool { a.words == b.words }
        func hash(into hasher: inout Hasher) {
            hasher.combine(words.0); hasher.combine(words.1); hasher.combine(words.2); hasher.combine(words.3)
        }
        static let zero = Digest(StreamPosition.zeroHash)
    }

    /// One verified record, compact: a long archive holds millions of these.
    struct Entry: Sendable {
        var seq: UInt64
        var hash: Digest
        var prev: Digest
        /// Index into ``ChainAnalyzer/keyIDs``; key ids are few, records many.
        var key: Int32
        /// Index of `prev_kid`, or -1.
        var previousKey: Int32
        var line: Int
    }

    struct StreamState: Sendable {
        var entries: [Entry] = []
        /// `store_lost` statements by the hash of the record that carries them (few: one per recovery or quota drop).
        var statements: [Digest: LossStatement] = [:]
        var tampered: [LineIssue] = []
        var unknownKey: [LineIssue] = []
        var unsyncedClock: Set<UInt64> = []
        var replacements: [UInt64: MeterReplacement] = [:]
        var identityMismatch: Set<UInt64> = []
    }

    var streams: [StreamKey: StreamState] = [:]
    var keyIDs: [String] = []
    var keyIndex: [String: Int32] = [:]
    var malformed: [LineIssue] = []
    var records = 0
    /// When true, a stream whose first verified record is not seq 1 has a gap from seq 1.
    public var inputStartsAtEpochStart: Bool
    /// When true, duplicates and reordering are reported without failing.
    public var toleratesRedelivery: Bool

    /// - Parameters:
    ///   - inputStartsAtEpochStart: the input holds every record from seq 1 on (a whole archive), so a
    ///     stream whose first record is later has lost its head.
    ///   - toleratesRedelivery: the input is a log of deliveries (at least once, with replays), where
    ///     duplicates and reordering are expected: they are still reported, but do not fail.
    public init(inputStartsAtEpochStart: Bool = false, toleratesRedelivery: Bool = false) {
        self.inputStartsAtEpochStart = inputStartsAtEpochStart
        self.toleratesRedelivery = toleratesRedelivery
    }

    /// Adds the outcome for the record on `line` (1-based).
    public mutating func add(_ result: Result<VerifiedRecord, RecordFailure>, line: Int) {
        records += 1
        switch result {
        case .success(let v):
            let r = v.record
            let entry = Entry(seq: r.seq, hash: Digest(v.hash), prev: Digest(r.prev), key: intern(r.keyID),
                              previousKey: r.previousKeyID.map { intern($0) } ?? -1, line: line)
            streams[r.stream, default: StreamState()].entries.append(entry)
            if let lost = r.storeLost { streams[r.stream, default: StreamState()].statements[entry.hash] = LossStatement(statedBy: r.seq, seqs: lost.seqs, cause: lost.cause) }
            if r.clock == .unsynced { streams[r.stream, default: StreamState()].unsyncedClock.insert(r.seq) }
            if let replaced = r.replacement { streams[r.stream, default: StreamState()].replacements[r.seq] = replaced }
            if r.sourceIdentity == .mismatch { streams[r.stream, default: StreamState()].identityMismatch.insert(r.seq) }
        case .failure(let f):
            guard let claimed = f.claimed else {
                malformed.append(LineIssue(line: line, seq: nil, reason: f.reason))
                return
            }
            let issue = LineIssue(line: line, seq: claimed.seq, reason: f.reason)
            switch f.kind {
            case .unknownKey: streams[claimed.stream, default: StreamState()].unknownKey.append(issue)
            case .tampered, .malformed: streams[claimed.stream, default: StreamState()].tampered.append(issue)
            }
        }
    }

    mutating func intern(_ keyID: String) -> Int32 {
        if let i = keyIndex[keyID] { return i }
        let i = Int32(keyIDs.count)
        keyIDs.append(keyID)
        keyIndex[keyID] = i
        return i
    }

    /// The findings so far, streams sorted by gateway, meter and epoch.
    public func report() -> VerificationReport {
        VerificationReport(
            streams: streams.keys.sorted().map { analyse($0, streams[$0]!) },
            malformed: malformed, records: records)
    }

    func analyse(_ key: StreamKey, _ state: StreamState) -> StreamReport {
        var report = StreamReport(stream: key, verified: 0, firstSeq: nil, lastSeq: nil, gaps: [], duplicates: [], forks: [],
                                  reordered: [], brokenLinks: [], keyRotations: [], keyProblems: [],
                                  tampered: state.tampered, unknownKey: state.unknownKey, unsyncedClock: state.unsyncedClock.sorted(),
                                  toleratesRedelivery: toleratesRedelivery)
        report.replacements = state.replacements
        report.identityMismatch = state.identityMismatch.sorted()
        // Arrival order: duplicates and reordering.
        var seen = Set<Digest>()
        var maxSeq: UInt64 = 0
        // seq → the distinct records with that seq, in arrival order.
        var bySeq: [UInt64: [Entry]] = [:]
        for entry in state.entries {
            if !seen.insert(entry.hash).inserted {
                report.duplicates.append(entry.seq)
                continue
            }
            if entry.seq < maxSeq { report.reordered.append(entry.seq) }
            maxSeq = max(maxSeq, entry.seq)
            bySeq[entry.seq, default: []].append(entry)
            report.verified += 1
        }
        let seqs = bySeq.keys.sorted()
        report.firstSeq = seqs.first
        report.lastSeq = seqs.last
        report.forks = seqs.filter { bySeq[$0]!.count > 1 }
        let forked = Set(report.forks)
        if inputStartsAtEpochStart, let first = seqs.first, first > 1 { report.gaps.append(1...(first - 1)) }
        var previous: UInt64?
        for seq in seqs {
            if let p = previous, seq > p + 1 { report.gaps.append((p + 1)...(seq - 1)) }
            defer { previous = seq }
            guard !forked.contains(seq), let entry = bySeq[seq]?.first else { continue }
            if seq == 1 {
                if entry.prev != .zero { report.brokenLinks.append(seq) }
                continue
            }
            // Links and key changes can only be judged against a present, unambiguous predecessor.
            guard !forked.contains(seq - 1), let before = bySeq[seq - 1]?.first else {
                if entry.previousKey >= 0 { report.keyRotations.append(seq) }
                continue
            }
            if entry.prev != before.hash { report.brokenLinks.append(seq) }
            if entry.key != before.key {
                if entry.previousKey == before.key { report.keyRotations.append(seq) } else { report.keyProblems.append(seq) }
            } else if entry.previousKey >= 0 {
                report.keyProblems.append(seq)
            }
        }
        applyStatements(state.statements.values, seqs: seqs, forked: forked, to: &report)
        return report
    }

    /// Moves the parts of gaps that a signed `store_lost` statement explains to ``StreamReport/statedLost``.
    ///
    /// A statement is in force when the record carrying it verified, is the only record with its seq, and
    /// its link is not broken. After a recovery the gateway's `prev` is the hash of record `to_seq`: when the
    /// input holds the record before the stating one, the link is checked as every other link; when it does
    /// not, the link cannot be checked and the statement is what explains the missing seqs.
    /// `seqs` are the stream's distinct seqs, sorted.
    func applyStatements(_ statements: some Collection<LossStatement>, seqs: [UInt64], forked: Set<UInt64>,
                         to report: inout StreamReport) {
        guard !statements.isEmpty else { return }
        let broken = Set(report.brokenLinks)
        report.lossStatements = statements.filter { !forked.contains($0.statedBy) && !broken.contains($0.statedBy) }
            .sorted { $0.statedBy < $1.statedBy }
        let stated = report.lossStatements.map(\.seqs)
        var open: [ClosedRange<UInt64>] = []
        for gap in report.gaps {
            let (covered, rest) = Self.split(gap, by: stated)
            report.statedLost += covered
            open += rest
        }
        report.gaps = open
        for statement in report.lossStatements {
            var run: ClosedRange<UInt64>?
            for seq in seqs where statement.seqs.contains(seq) {
                if let r = run, r.upperBound + 1 == seq { run = r.lowerBound...seq } else {
                    if let r = run { report.statedLostReceived.append(r) }
                    run = seq...seq
                }
            }
            if let run { report.statedLostReceived.append(run) }
        }
    }

    /// The parts of `range` inside any of `cover` and the parts outside all of them, each sorted.
    static func split(_ range: ClosedRange<UInt64>, by cover: [ClosedRange<UInt64>]) -> (inside: [ClosedRange<UInt64>], outside: [ClosedRange<UInt64>]) {
        var inside: [ClosedRange<UInt64>] = []
        var outside: [ClosedRange<UInt64>] = []
        var next = range.lowerBound
        for c in cover.sorted(by: { $0.lowerBound < $1.lowerBound }) where c.overlaps(range) && c.upperBound >= next {
            let lower = max(c.lowerBound, next)
            if lower > next { outside.append(next...(lower - 1)) }
            let upper = min(c.upperBound, range.upperBound)
            if let last = inside.last, last.upperBound + 1 >= lower { inside[inside.count - 1] = last.lowerBound...upper } else { inside.append(lower...upper) }
            if upper == range.upperBound { return (inside, outside) }
            next = upper + 1
        }
        outside.append(next...range.upperBound)
        return (inside, outside)
    }
}
