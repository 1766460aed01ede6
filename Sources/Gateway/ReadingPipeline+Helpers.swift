import Accounting
import Logging
import MeterCore
import Modbus
import Outbox

extension ReadingPipeline {
    /// One `info` line per commit (a burst of every meter closing the same interval is one line, not one per
    /// meter), naming its first ``loggedRecordsPerLine`` runs of a meter's consecutive seqs; each record at `debug`.
    func logStored(_ records: [OutboxRecord]) {
        var runs: [(meter: String, seqs: ClosedRange<UInt64>)] = []
        for r in records {
            if let last = runs.last, last.meter == r.meter, last.seqs.upperBound + 1 == r.seq {
                runs[runs.count - 1].seqs = last.seqs.lowerBound...r.seq
            } else {
                runs.append((r.meter, r.seq...r.seq))
            }
        }
        let shown = runs.prefix(Self.loggedRecordsPerLine)
        let named = shown.map { run in
            run.seqs.count == 1 ? "\(run.meter) seq \(run.seqs.lowerBound)" : "\(run.meter) seqs \(run.seqs.lowerBound)…\(run.seqs.upperBound)"
        }.joined(separator: ", ")
        let unnamed = records.count - shown.reduce(0) { $0 + $1.seqs.count }
        let more = unnamed > 0 ? " and \(unnamed) more" : ""
        logger.info("signed \(named)\(more)", metadata: records.count > 1 ? ["records": "\(records.count)"] : [:])
        for r in records {
            logger.debug("signed \(r.meter) seq \(r.seq)", metadata: ["meter": "\(r.meter)", "seq": "\(r.seq)", "bytes": "\(r.bytes.count)"])
        }
    }

    static let loggedRecordsPerLine = 8

    /// The counter range of a profile's energy register, in mWh: integer registers wrap at their width.
    static func range(of field: RegisterField?) -> CounterRange {
        guard let field else { return .bits(64) }
        let bits: Int
        switch field.type {
        case .u16, .i16: bits = 16
        case .u32, .i32: bits = 32
        default: return .bits(64)   // float registers and 64-bit counters do not wrap in a meter's lifetime
        }
        let mWhPerCount = field.scale * (field.unit.toBase ?? 1) * 1000
        let modulus = Double(UInt64(1) << UInt64(bits)) * mWhPerCount
        guard modulus.isFinite, modulus >= 1, modulus < 1.8e19, modulus == modulus.rounded() else { return .bits(64) }
        return .modulus(UInt64(modulus))
    }

    static func millis(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}
