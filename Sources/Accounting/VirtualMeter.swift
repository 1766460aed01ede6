import MeterCore

/// A configured sum or difference of other streams, interval by interval: a rack as the sum of its GPUs,
/// net energy as import − export of one meter.
///
/// Its quality is the worst of its parts; a part missing for an interval makes it a `gap`. Its energy is
/// the signed sum of its parts' whole-mWh deltas: positive is import, negative is export. Cumulative totals
/// are the virtual meter's own, starting at zero, and belong in the snapshot.
public struct VirtualMeter: Sendable {
    public struct Term: Sendable, Hashable, Codable {
        /// Which of a part's energies the term takes.
        public enum Channel: String, Sendable, Hashable, Codable {
            /// Import minus export.
            case net
            case importOnly = "import"
            case exportOnly = "export"
        }
        public enum Sign: String, Sendable, Hashable, Codable {
            case plus = "+"
            case minus = "-"
        }
        public var meter: MeterID
        public var channel: Channel
        public var sign: Sign

        public init(_ sign: Sign = .plus, _ meter: MeterID, channel: Channel = .net) {
            self.meter = meter
            self.channel = channel
            self.sign = sign
        }
    }

    public struct Snapshot: Sendable, Hashable, Codable {
        public var meter: MeterID
        public var importTotal: MilliwattHours
        public var exportTotal: MilliwattHours
        public var lastEndMillis: Int64?
    }

    public let meter: MeterID
    public let terms: [Term]
    private var importTotal: MilliwattHours = .zero
    private var exportTotal: MilliwattHours = .zero
    private var lastEndMillis: Int64?

    public init(meter: MeterID, terms: [Term]) throws(AccountingError) {
        guard !terms.isEmpty else { throw .virtualMeterInput(meter: meter, reason: "has no terms") }
        var seen = Set<Term>()
        for term in terms where !seen.insert(term).inserted {
            throw .virtualMeterInput(meter: meter, reason: "names \(term.sign.rawValue)\(term.meter) (\(term.channel.rawValue)) twice")
        }
        if terms.contains(where: { $0.meter == meter }) {
            throw .virtualMeterInput(meter: meter, reason: "refers to itself")
        }
        self.meter = meter
        self.terms = terms
    }

    public init(meter: MeterID, terms: [Term], restoring snapshot: Snapshot) throws(AccountingError) {
        try self.init(meter: meter, terms: terms)
        guard snapshot.meter == meter else {
            throw .snapshotMismatch(meter: meter, reason: "it was saved for meter \(snapshot.meter)")
        }
        importTotal = snapshot.importTotal
        exportTotal = snapshot.exportTotal
        lastEndMillis = snapshot.lastEndMillis
    }

    public func snapshot() -> Snapshot {
        Snapshot(meter: meter, importTotal: importTotal, exportTotal: exportTotal, lastEndMillis: lastEndMillis)
    }

    /// The meters this virtual meter reads.
    public var parts: Set<MeterID> { Set(terms.map(\.meter)) }

    /// Combines its parts' results for one interval. Every result must be for that interval and for a part;
    /// a part without a result makes the interval a gap. Throws (changing nothing) on results that do not fit.
    public mutating func combine(_ results: [IntervalResult]) throws(AccountingError) -> IntervalResult {
        guard let first = results.first else { throw .virtualMeterInput(meter: meter, reason: "no results to combine, and so no interval") }
        return try combine(results, startMillis: first.startMillis, endMillis: first.endMillis)
    }

    /// Combines its parts' results for the interval `startMillis..<endMillis`. With no results at all (every part
    /// down) the interval is still emitted, as a gap with no energy: downtime is never a silent skip.
    public mutating func combine(_ results: [IntervalResult], startMillis: Int64, endMillis: Int64) throws(AccountingError) -> IntervalResult {
        guard endMillis > startMillis else {
            throw .virtualMeterInput(meter: meter, reason: "interval \(startMillis)…\(endMillis) is empty")
        }
        var byMeter: [MeterID: IntervalResult] = [:]
        for result in results {
            guard result.startMillis == startMillis, result.endMillis == endMillis else {
                throw .virtualMeterInput(meter: meter, reason: "\(result.meter) is for \(result.startMillis)…\(result.endMillis), not \(startMillis)…\(endMillis)")
            }
            guard parts.contains(result.meter) else {
                throw .virtualMeterInput(meter: meter, reason: "\(result.meter) is not one of its parts")
            }
            guard byMeter.updateValue(result, forKey: result.meter) == nil else {
                throw .virtualMeterInput(meter: meter, reason: "two results for \(result.meter)")
            }
        }
        if let lastEndMillis, startMillis < lastEndMillis {
            throw .virtualMeterInput(meter: meter, reason: "interval starting \(startMillis) is before the end of the last one (\(lastEndMillis))")
        }
        var net: Int64 = 0
        var quality = Quality.measured
        var samples = 0
        var averageWatts = 0.0
        var peakWatts = 0.0
        let onlySums = terms.allSatisfy { $0.sign == .plus && $0.channel != .exportOnly }
        for term in terms {
            guard let part = byMeter[term.meter] else {
                quality = .gap
                continue
            }
            let value: Int64
            switch term.channel {
            case .net: value = part.importDelta.rawValue - part.exportDelta.rawValue
            case .importOnly: value = part.importDelta.rawValue
            case .exportOnly: value = part.exportDelta.rawValue
            }
            net += term.sign == .plus ? value : -value
            quality = max(quality, part.quality)
            samples += part.sampleCount
            peakWatts += part.peakPowerWatts
        }
        let hours = Double(endMillis - startMillis) / 3_600_000
        averageWatts = Double(net) / 1000 / hours
        let importDelta = MilliwattHours(max(net, 0)), exportDelta = MilliwattHours(max(-net, 0))
        importTotal = importTotal + importDelta
        exportTotal = exportTotal + exportDelta
        lastEndMillis = endMillis
        // The parts' peaks need not coincide, so their sum is only an upper bound; with a difference there is
        // no bound at all, and the average is the honest figure.
        return IntervalResult(
            meter: meter, source: .virtual, startMillis: startMillis, endMillis: endMillis,
            importTotal: importTotal, exportTotal: exportTotal, importDelta: importDelta, exportDelta: exportDelta,
            averagePowerWatts: averageWatts, peakPowerWatts: onlySums ? max(peakWatts, averageWatts) : averageWatts,
            sampleCount: samples, quality: quality)
    }
}
