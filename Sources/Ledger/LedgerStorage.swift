import MeterCore
import Signing

/// Where the ledger keeps its readings: an embedded SQLite file (``SQLiteLedgerStore``) or a PostgreSQL
/// database shared by several ledger processes (`PostgresLedgerStore`). Both keep the same tables and the
/// same guarantees, and the contract tests run against each.
///
/// A reading is stored once per (gateway, meter, epoch, seq); a different record under a stored key is kept
/// aside as a fork and never overwrites; chain links are checked against the stored neighbours; seqs a
/// gateway stated lost are kept and never asked for.
public protocol LedgerStorage: Actor {
    /// The tariff new readings are priced under.
    nonisolated var tariff: Tariff { get }
    /// Where the ledger lives, for logs (a path, or a URL without its password).
    nonisolated var location: String { get }

    /// Stores verified records, each idempotently, in one transaction (one sync to disk, one round trip where the
    /// database allows); the outcomes in the batch's order.
    func add(_ batch: [LedgerEntry]) async throws(LedgerError) -> [LedgerOutcome]
    /// Keeps what identifies a payload that could not be verified (its first bytes, length and SHA-256) with the reason.
    func reject(topic: String, payload: [UInt8], reason: String, receivedMillis: Int64) async throws(LedgerError)
    /// The missing seq ranges of `stream` below the highest received, as this process knows them, less the seqs
    /// its gateway stated lost.
    func gaps(of stream: StreamKey, fromFirstSeq: Bool) async throws(LedgerError) -> [ClosedRange<UInt64>]
    /// The gaps of `stream` after reading its seqs again from the database: another ledger process may have
    /// filled them.
    func refreshedGaps(of stream: StreamKey, fromFirstSeq: Bool) async throws(LedgerError) -> [ClosedRange<UInt64>]
    /// Takes the right to ask for `seqs` of `stream` until `untilMillis`, unless another ledger process holds it:
    /// so a gap is asked for once, not by every process sharing the database. True when this process may ask.
    func claimReplay(of stream: StreamKey, seqs: ClosedRange<UInt64>, by claimant: String, nowMillis: Int64,
                     untilMillis: Int64) async throws(LedgerError) -> Bool
    /// The newest epoch of each (gateway, meter), by the last record received: the one a `cmd/replay` reaches.
    func latestStreams() async throws(LedgerError) -> [StreamKey]
    /// Per stream, the seqs a stored record states its gateway's store lost and that were never received.
    func statedLostSeqs() async throws(LedgerError) -> [StreamKey: [ClosedRange<UInt64>]]
    /// Ledger rows whose interval starts in [from, to) (UTC milliseconds), by start, gateway, meter.
    func rows(fromMillis: Int64, toMillis: Int64) async throws(LedgerError) -> [LedgerRow]
    /// Every rejected payload kept, oldest first.
    func rejections() async throws(LedgerError) -> [LedgerRejection]
    /// Every fork recorded.
    func forks() async throws(LedgerError) -> [LedgerFork]
    /// Counts of the ledger's tables.
    func counts() async throws(LedgerError) -> LedgerCounts
    /// Releases the connection(s); the store is not used after.
    func close() async
}

extension LedgerStorage {
    /// Stores one verified record (idempotent); `envelope` is the exact bytes received.
    public func add(_ verified: VerifiedRecord, envelope: [UInt8], receivedMillis: Int64) async throws(LedgerError) -> LedgerOutcome {
        let outcomes = try await add([LedgerEntry(verified, envelope: envelope, receivedMillis: receivedMillis)])
        return outcomes[0]
    }

    /// The gaps of several streams, as ``gaps(of:fromFirstSeq:)`` gives them.
    public func gaps(of streams: Set<StreamKey>, fromFirstSeq: Bool) async throws(LedgerError) -> [StreamKey: [ClosedRange<UInt64>]] {
        var result: [StreamKey: [ClosedRange<UInt64>]] = [:]
        for stream in streams { result[stream] = try await gaps(of: stream, fromFirstSeq: fromFirstSeq) }
        return result
    }

    public func rows() async throws(LedgerError) -> [LedgerRow] { try await rows(fromMillis: .min, toMillis: .max) }
}

/// One verified record to store: the exact bytes received, and when.
public struct LedgerEntry: Sendable {
    public var verified: VerifiedRecord
    public var envelope: [UInt8]
    public var receivedMillis: Int64

    public init(_ verified: VerifiedRecord, envelope: [UInt8], receivedMillis: Int64) {
        self.verified = verified
        self.envelope = envelope
        self.receivedMillis = receivedMillis
    }
}

/// What storing one verified record did.
public enum LedgerOutcome: Sendable, Hashable {
    /// A new record; `chainProblems` names broken links to its stored neighbours.
    case stored(chainProblems: [String])
    /// The same record again (at-least-once delivery, a replay): nothing changed.
    case duplicate
    /// A different record under a key already stored: recorded in `forks`, the stored one kept.
    case fork(storedHash: [UInt8])
}

/// Row counts of the ledger's tables.
public struct LedgerCounts: Sendable, Hashable {
    public var readings: Int64
    public var forks: Int64
    public var chainBreaks: Int64
    public var rejected: Int64

    public init(readings: Int64, forks: Int64, chainBreaks: Int64, rejected: Int64) {
        self.readings = readings
        self.forks = forks
        self.chainBreaks = chainBreaks
        self.rejected = rejected
    }
}

/// One kept rejection: the first bytes of the payload, its whole length and SHA-256, and why.
public struct LedgerRejection: Sendable, Hashable {
    public var topic: String
    public var reason: String
    public var prefix: [UInt8]
    public var payloadBytes: Int64?
    public var payloadSHA256: [UInt8]?

    public init(topic: String, reason: String, prefix: [UInt8], payloadBytes: Int64?, payloadSHA256: [UInt8]?) {
        self.topic = topic
        self.reason = reason
        self.prefix = prefix
        self.payloadBytes = payloadBytes
        self.payloadSHA256 = payloadSHA256
    }
}

/// What both stores keep of a rejected payload, and the chain-link messages both write: one wording.
public enum LedgerRules {
    /// How much of a rejected payload is kept (with its length and SHA-256): enough to recognise it, never
    /// megabytes of whatever a hostile publisher sent.
    public static let rejectedPrefixBytes = 256
    public static let rejectedTopicBytes = 256
    public static let rejectedReasonCharacters = 1024

    public static func keptTopic(_ topic: String) -> String { String(decoding: topic.utf8.prefix(rejectedTopicBytes), as: UTF8.self) }
    public static func keptReason(_ reason: String) -> String { String(reason.prefix(rejectedReasonCharacters)) }

    public static let notAChainStart = "seq 1 does not start a chain: prev is not 32 zero bytes"
    public static func prevMismatch(seq: UInt64) -> String { "seq \(seq): prev does not match the hash of seq \(seq - 1)" }
}

/// A verified reading priced under a tariff: what both stores write beside the record.
public struct PricedReading: Sendable, Hashable {
    public var price: Price
    public var amount: Amount
    public var exportPrice: Price
    public var exportAmount: Amount
    /// Why the reading could not be priced (64-bit money overflow); both amounts are then 0.
    public var pricingError: String?

    /// A verified reading that cannot be priced is stored all the same, with the error: it was received (so it is
    /// never asked for again), and its amounts are 0 with the reason beside them, for a person to settle.
    public init(_ r: ReadingRecord, tariff: Tariff) {
        var error: String?
        if let priced = tariff.amount(milliwattHours: r.importDelta.rawValue, startMillis: r.startMillis) {
            (price, amount) = priced
        } else {
            price = tariff.price(atMillis: r.startMillis)
            amount = Amount(exact: 0, scale: price.precision)
            error = LedgerError.amountOverflow(stream: r.stream, seq: r.seq, milliwattHours: r.importDelta.rawValue, price: price).description
        }
        if let earned = tariff.feedInAmount(milliwattHours: r.exportDelta.rawValue, startMillis: r.startMillis) {
            (exportPrice, exportAmount) = earned
        } else {
            exportPrice = tariff.feedInPrice(atMillis: r.startMillis)
            exportAmount = Amount(exact: 0, scale: exportPrice.precision)
            let problem = LedgerError.amountOverflow(stream: r.stream, seq: r.seq, milliwattHours: r.exportDelta.rawValue, price: exportPrice).description
            error = error.map { "\($0); export: \(problem)" } ?? "export: \(problem)"
        }
        if error != nil {
            // Neither amount is to be paid while one cannot be computed.
            amount = Amount(exact: 0, scale: price.precision)
            exportAmount = Amount(exact: 0, scale: exportPrice.precision)
        }
        pricingError = error
    }
}
