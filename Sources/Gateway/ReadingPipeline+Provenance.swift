import Accounting
import Foundation
import Logging
import MeterCore
import Modbus
import Signing

/// Which meter answers a stream, kept with its accounting state: the identity last read, whether it is not the
/// commissioned one, and a replacement statement waiting for the record of the interval it happened in.
struct Provenance: Codable, Sendable, Hashable {
    var identity: MeterIdentity?
    var mismatch = false
    var pendingReplacement: MeterReplacement?
    /// The last "offers no identity" reason logged (not saved: logged once per run).
    var notOfferedLogged: String?

    enum CodingKeys: String, CodingKey { case identity, mismatch, pendingReplacement }

    var encoded: [UInt8]? { try? Array(JSONEncoder().encode(self)) }
}

extension ReadingPipeline {
    /// The outbox key under which a stream's ``Provenance`` is saved, in the same transaction as its records.
    static func provenanceKey(_ meter: MeterID) -> String { "provenance/\(meter)" }

    static func provenance(_ meter: MeterID, saved: [UInt8]?, logger: Logger) -> Provenance {
        guard let saved else { return Provenance() }
        do {
            return try JSONDecoder().decode(Provenance.self, from: Data(saved))
        } catch {
            logger.warning("saved meter identity is unreadable; the next identity read starts afresh", metadata: ["meter": "\(meter)", "reason": "\(error)"])
            return Provenance()
        }
    }

    static func mismatchText(_ found: MeterIdentity, _ identity: StreamSpecification.Identity?) -> String {
        "serial \(found.serial) answers; \(identity?.commissionedSerial ?? "another") was commissioned"
    }

    /// Notes the identity a poll read. Returns whether the reading is another meter's first (a replacement), whose
    /// counters must become the new baseline; the statement then waits in the stream's provenance for its record.
    func note(_ found: MeterIdentity, of stream: inout Stream, reading: CounterAccountant.Reading,
              lastCounts: (importCount: UInt64, exportCount: UInt64?)?) -> Bool {
        guard let meter = streams.first(where: { $0.value.signer.meter == stream.signer.meter })?.key else { return false }
        let mismatch = stream.identity?.commissionedSerial.map { $0 != found.serial } ?? false
        if mismatch != stream.provenance.mismatch || (mismatch && stream.provenance.identity != found) {
            stream.provenance.mismatch = mismatch
            provenanceUnsaved.insert(meter)
            if mismatch {
                identityAlarms[meter.rawValue] = Self.mismatchText(found, stream.identity)
                logger.error("another meter answers than the one commissioned: its energy is not signed as measured until the config names it",
                             metadata: ["meter": "\(meter)", "answers": "\(found)", "commissioned": "\(stream.identity?.commissionedSerial ?? "-")"])
            } else {
                identityAlarms[meter.rawValue] = nil
                logger.notice("the commissioned meter answers again", metadata: ["meter": "\(meter)", "answers": "\(found)"])
            }
        }
        guard stream.provenance.identity != found else { return false }
        let previous = stream.provenance.identity
        stream.provenance.identity = found
        provenanceUnsaved.insert(meter)
        guard let previous, let last = lastCounts else {
            logger.info("meter identified", metadata: ["meter": "\(meter)", "identity": "\(found)"])
            return false
        }
        let mWh = { (count: UInt64) in MilliwattHours(Int64(clamping: count)) }
        stream.provenance.pendingReplacement = MeterReplacement(
            old: previous.sourceID, new: found.sourceID, atMillis: reading.time.wallNanos / 1_000_000,
            oldImport: mWh(last.importCount), oldExport: last.exportCount.map(mWh),
            newImport: mWh(reading.importCount), newExport: reading.exportCount.map(mWh))
        logger.notice("meter replaced: the new meter's counters are the stream's new baseline; the change is signed with the interval",
                      metadata: ["meter": "\(meter)", "old": "\(previous)", "new": "\(found)",
                                 "old_import_mwh": "\(last.importCount)", "new_import_mwh": "\(reading.importCount)"])
        return true
    }

    /// What the record of `result` says about its source: the meter that answered (or the configured serial), and
    /// the replacement statement when the interval holds the swap. A meter that is not the commissioned one is
    /// never `measured`.
    func sourceStatement(_ meter: MeterID, for result: inout IntervalResult) -> SourceStatement {
        guard var stream = streams[meter], let identity = stream.identity else { return SourceStatement() }
        var statement = SourceStatement()
        if let found = stream.provenance.identity {
            statement.id = found.sourceID
            statement.identity = stream.provenance.mismatch ? .mismatch : .read
        } else if let configured = identity.configured {
            statement.id = configured.sourceID
            statement.identity = .configured
        }
        if let pending = stream.provenance.pendingReplacement {
            if result.endMillis > pending.atMillis {
                statement.replacement = pending
                stream.provenance.pendingReplacement = nil
                provenanceUnsaved.insert(meter)
                streams[meter] = stream
            } else {
                // An interval that ended before the swap was the old meter's.
                statement.id = pending.old
                statement.identity = .read
            }
        }
        if stream.provenance.mismatch, result.quality < .gap { result.quality = .gap }
        return statement
    }
}
