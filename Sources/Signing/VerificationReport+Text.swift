import MeterCore

extension VerificationReport {
    /// A readable report: one headline per stream, one line per kind of problem, then the verdict.
    public var text: String {
        var lines: [String] = []
        for s in streams {
            let range = s.firstSeq.map { "seq \($0)…\(s.lastSeq!)" } ?? "no valid record"
            lines.append("\(s.stream): \(s.passed ? "OK" : "FAIL"), \(s.verified) verified (\(range))")
            if !s.gaps.isEmpty { lines.append("  gaps (missing seq): \(s.gaps.map(Self.rangeText).joined(separator: ", "))") }
            if !s.statedLost.isEmpty {
                lines.append("  stated lost by the gateway (signed store_lost, not a failure): seqs \(s.statedLost.map(Self.rangeText).joined(separator: ", "))")
            }
            for statement in s.lossStatements {
                let why = statement.cause == .quota ? "quota policy dropped unsent" : "store lost"
                lines.append("  seq \(statement.statedBy) states the gateway's \(why) seqs \(Self.rangeText(statement.seqs))")
            }
            if !s.statedLostReceived.isEmpty {
                lines.append("  stated lost but received (published before the store lost them): seqs \(s.statedLostReceived.map(Self.rangeText).joined(separator: ", "))")
            }
            if !s.duplicates.isEmpty { lines.append("  duplicates: \(Self.seqList(s.duplicates))") }
            if !s.forks.isEmpty { lines.append("  forks (different records with one seq): \(Self.seqList(s.forks))") }
            if !s.reordered.isEmpty { lines.append("  reordered (arrived after a higher seq): \(Self.seqList(s.reordered))") }
            if !s.brokenLinks.isEmpty { lines.append("  broken chain (prev is not the previous record's hash): \(Self.seqList(s.brokenLinks))") }
            if !s.keyProblems.isEmpty { lines.append("  key changed without naming the previous key: \(Self.seqList(s.keyProblems))") }
            if !s.keyRotations.isEmpty { lines.append("  key rotations (new chain segment): \(Self.seqList(s.keyRotations))") }
            for (seq, r) in s.replacements.sorted(by: { $0.key < $1.key }) {
                lines.append("  seq \(seq) states, signed, that the meter was replaced: \(r.old) (import \(r.oldImport.rawValue) mWh) → \(r.new) (import \(r.newImport.rawValue) mWh)")
            }
            if !s.identityMismatch.isEmpty { lines.append("  signed while another meter than the commissioned one answered: \(Self.seqList(s.identityMismatch))") }
            if !s.unsyncedClock.isEmpty { lines.append("  signed with the clock not synchronised (times are the gateway's word): \(Self.seqList(s.unsyncedClock))") }
            if !s.tampered.isEmpty { lines.append("  tampered: \(s.tampered.count)"); lines += Self.issueLines(s.tampered) }
            if !s.unknownKey.isEmpty { lines.append("  unknown key: \(s.unknownKey.count)"); lines += Self.issueLines(s.unknownKey) }
        }
        if !malformed.isEmpty {
            lines.append("malformed lines: \(malformed.count)")
            lines += Self.issueLines(malformed)
        }
        let failing = streams.filter { !$0.passed }.count
        let verified = streams.reduce(0) { $0 + $1.verified }
        if records == 0 {
            lines.append("result: FAIL: no records in the input")
        } else {
            lines.append("result: \(passed ? "OK" : "FAIL"): \(records) records, \(verified) verified, \(streams.count) stream\(streams.count == 1 ? "" : "s"), \(failing) failing, \(malformed.count) malformed")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The report as one JSON object (for scripts and tests).
    public var json: String {
        func seqs(_ s: [UInt64]) -> JSONValue { .array(s.map { .integer($0) }) }
        func issues(_ list: [LineIssue]) -> JSONValue {
            .array(list.map { issue in
                .object([("line", .integer(issue.line)), ("seq", issue.seq.map { .integer($0) } ?? .null), ("reason", .string(issue.reason))])
            })
        }
        func ranges(_ list: [ClosedRange<UInt64>]) -> JSONValue { .array(list.map { .array([.integer($0.lowerBound), .integer($0.upperBound)]) }) }
        let streamValues = streams.map { s -> JSONValue in
            .object([
                ("gateway", .string(s.stream.gateway)), ("meter", .string(s.stream.meter)), ("epoch", .string(s.stream.epoch)),
                ("passed", .bool(s.passed)), ("verified", .integer(s.verified)),
                ("first_seq", s.firstSeq.map { .integer($0) } ?? .null), ("last_seq", s.lastSeq.map { .integer($0) } ?? .null),
                ("gaps", ranges(s.gaps)), ("stated_lost", ranges(s.statedLost)), ("stated_lost_received", ranges(s.statedLostReceived)),
                ("loss_statements", .array(s.lossStatements.map {
                    .object([("seq", .integer($0.statedBy)), ("from_seq", .integer($0.seqs.lowerBound)), ("to_seq", .integer($0.seqs.upperBound)),
                             ("cause", .string($0.cause.rawValue))])
                })),
                ("duplicates", seqs(s.duplicates)), ("forks", seqs(s.forks)), ("reordered", seqs(s.reordered)),
                ("broken_links", seqs(s.brokenLinks)), ("key_rotations", seqs(s.keyRotations)), ("key_problems", seqs(s.keyProblems)),
                ("tampered", issues(s.tampered)), ("unknown_key", issues(s.unknownKey)), ("unsynced_clock", seqs(s.unsyncedClock)),
                ("replacements", .array(s.replacements.sorted(by: { $0.key < $1.key }).map { seq, r in
                    .object([("seq", .integer(seq)), ("old", .string(r.old)), ("new", .string(r.new)), ("at_ms", .integer(r.atMillis)),
                             ("old_import_mwh", .integer(r.oldImport.rawValue)), ("new_import_mwh", .integer(r.newImport.rawValue))])
                })),
                ("identity_mismatch", seqs(s.identityMismatch)),
            ])
        }
        let value = JSONValue.object([
            ("passed", .bool(passed)), ("records", .integer(records)), ("streams", .array(streamValues)), ("malformed", issues(malformed)),
        ])
        return String(decoding: value.orderedBytes, as: UTF8.self)
    }

    static func rangeText(_ r: ClosedRange<UInt64>) -> String { r.count == 1 ? "\(r.lowerBound)" : "\(r.lowerBound)…\(r.upperBound)" }

    /// "3, 7…9, 12" for a list of seqs (sorted, runs folded).
    static func seqList(_ list: [UInt64]) -> String {
        var runs: [ClosedRange<UInt64>] = []
        for s in list.sorted() {
            if let last = runs.last, s == last.upperBound + 1 { runs[runs.count - 1] = last.lowerBound...s }
            else if let last = runs.last, last.contains(s) { continue }
            else { runs.append(s...s) }
        }
        let counted = list.count == Set(list).count ? "" : " (\(list.count) records)"
        return runs.map(rangeText).joined(separator: ", ") + counted
    }

    static func issueLines(_ issues: [LineIssue], limit: Int = 10) -> [String] {
        var out = issues.prefix(limit).map { "    line \($0.line)\($0.seq.map { " (seq \($0))" } ?? ""): \($0.reason)" }
        if issues.count > limit { out.append("    … and \(issues.count - limit) more") }
        return out
    }
}
