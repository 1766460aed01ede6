import Crypto
import Foundation
import Ledger
import Logging
import MeterCore
import NIOCore
import NIOSSL
import PostgresNIO
import Signing

/// The settlement ledger in a PostgreSQL database, which several ledger processes may share.
///
/// The same tables, keys and guarantees as ``SQLiteLedgerStore``: each reading stored once per (gateway, meter,
/// epoch, seq) whichever process received it, forks kept aside, chain links checked under a per-stream lock.
/// A dropped connection is retried (a new one is opened) for up to `reconnectWindow` before a call fails.
public actor PostgresLedgerStore: LedgerStorage {
    public nonisolated let tariff: Tariff
    public nonisolated let location: String
    let client: PostgresClient
    private let runner: Task<Void, Never>
    let logger: Logger
    let reconnectWindow: Duration
    /// Received seqs of the streams this process has touched, read from the database on first use.
    private var received: [StreamKey: SeqSet] = [:]
    private var statedLost: [StreamKey: SeqSet] = [:]

    /// Connects, then creates or upgrades the schema (or, `readOnly`, checks that the database holds a ledger).
    public static func open(_ target: PostgresLocation, tariff: Tariff = .none, readOnly: Bool = false,
                            reconnectWindow: Duration = .seconds(60),
                            logger: Logger = Logger(label: "metergate.ledger.postgres")) async throws(LedgerError) -> PostgresLedgerStore {
        // One connection of its own first: a wrong URL, password or database, or no server, is reported at once in the
        // server's words (the pool would retry quietly), and the schema is made ready before the pool starts.
        try await prepareSchema(target, readOnly: readOnly, logger: logger)
        return try PostgresLedgerStore(target, tariff: tariff, reconnectWindow: reconnectWindow, logger: logger)
    }

    private init(_ target: PostgresLocation, tariff: Tariff, reconnectWindow: Duration, logger: Logger) throws(LedgerError) {
        self.tariff = tariff
        self.location = target.description
        self.logger = logger
        self.reconnectWindow = reconnectWindow
        var configuration = PostgresClient.Configuration(host: target.host, port: target.port, username: target.user, password: target.password,
                                                         database: target.database, tls: try Self.clientTLS(target))
        configuration.options.connectTimeout = .seconds(10)
        configuration.options.maximumConnections = 4
        var quiet = logger
        quiet.logLevel = .critical   // the pool's own retries; failures reach the caller as errors
        client = PostgresClient(configuration: configuration, backgroundLogger: quiet)
        let client = self.client
        runner = Task { await client.run() }
    }

    private enum TLSChoice {
        case disable, prefer(TLSConfiguration), require(TLSConfiguration)
    }

    private static func clientTLS(_ target: PostgresLocation) throws(LedgerError) -> PostgresClient.Configuration.TLS {
        switch try tls(target) {
        case .disable: return .disable
        case .prefer(let c): return .prefer(c)
        case .require(let c): return .require(c)
        }
    }

    private static func tls(_ target: PostgresLocation) throws(LedgerError) -> TLSChoice {
        var unverified = TLSConfiguration.makeClientConfiguration()
        unverified.certificateVerification = .none   // libpq's prefer and require encrypt without checking who answers
        switch target.tls {
        case .disable: return .disable
        case .prefer: return .prefer(unverified)
        case .require: return .require(unverified)
        case .verifyFull:
            var verified = TLSConfiguration.makeClientConfiguration()
            if let file = target.rootCertificate {
                do { verified.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file)) } catch {
                    throw .postgres(operation: "sslrootcert \(file)", detail: "\(error)")
                }
            }
            return .require(verified)
        }
    }

    public func close() async {
        runner.cancel()
        await runner.value
    }

    // MARK: Schema

    private static func prepareSchema(_ target: PostgresLocation, readOnly: Bool, logger: Logger) async throws(LedgerError) {
        let known = PostgresLedgerSchema.known
        let location = target.description
        let found: Int
        do {
            let tls: PostgresConnection.Configuration.TLS = switch try Self.tls(target) {
            case .disable: .disable
            case .prefer(let c): .prefer(try NIOSSLContext(configuration: c))
            case .require(let c): .require(try NIOSSLContext(configuration: c))
            }
            var configuration = PostgresConnection.Configuration(host: target.host, port: target.port, username: target.user, password: target.password,
                                                                 database: target.database, tls: tls)
            configuration.options.connectTimeout = .seconds(10)
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            // Closed before returning, whatever the transaction did: the pool opens its own connections.
            let outcome: Result<Int, any Error>
            do { outcome = .success(try await connection.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresLedgerSchema.migrationLock))", logger: logger)
                let hasTable = try await Self.exists(connection, table: "metergate_ledger_schema", logger: logger)
                if !hasTable, readOnly { return -1 }
                if !hasTable { try await connection.query(PostgresQuery(unsafeSQL: PostgresLedgerSchema.versionTable), logger: logger) }
                var version = 0
                for try await (v) in try await connection.query("SELECT coalesce(max(version), 0)::bigint FROM metergate_ledger_schema",
                                                                logger: logger).decode(Int64.self) { version = Int(v) }
                if version > known || readOnly { return version }
                for step in PostgresLedgerSchema.steps where step.version > version {
                    for statement in step.statements { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                    try await connection.query("INSERT INTO metergate_ledger_schema(version, name) VALUES (\(step.version), \(step.name))", logger: logger)
                    logger.info("ledger schema step applied", metadata: ["version": "\(step.version)", "name": "\(step.name)", "db": "\(location)"])
                }
                return known
            }) } catch { outcome = .failure(error) }
            try? await connection.close()
            found = try outcome.get()
        } catch let error as LedgerError {
            throw error
        } catch {
            throw .postgres(operation: "opening \(location)", detail: Self.describe(error))
        }
        if found < 0 || (readOnly && found == 0) { throw .notALedger(path: location) }
        if found > known { throw .newerSchema(location: location, found: found, known: known) }
    }

    private static func exists(_ connection: PostgresConnection, table: String, logger: Logger) async throws -> Bool {
        var result = false
        for try await (name) in try await connection.query("SELECT to_regclass(\(table))::text", logger: logger).decode(String?.self) {
            result = name != nil
        }
        return result
    }

    // MARK: Readings

    /// The batch in one statement, so one round trip and one commit: `metergate_add_reading` once per entry, in the
    /// order of their streams, so two processes take the per-stream locks in the same order and never deadlock.
    /// Between a reading's chain problems in the batch result: a control character no problem text holds.
    static let problemSeparator = "\u{1F}"

    public func add(_ batch: [LedgerEntry]) async throws(LedgerError) -> [LedgerOutcome] {
        guard !batch.isEmpty else { return [] }
        for stream in Set(batch.map(\.verified.record.stream)) where received[stream] == nil { try await load(stream) }
        let order = batch.indices.sorted { (batch[$0].verified.record.stream, batch[$0].verified.record.seq) < (batch[$1].verified.record.stream, batch[$1].verified.record.seq) }
        var c = AddReadingColumns()
        for i in order { c.append(batch[i], tariff: tariff) }
        // One result row for the whole batch: an outcome code per reading, and the forks and chain problems
        // (rare) by position. A row per reading cost more to decode than the readings cost to store.
        let query: PostgresQuery = """
            SELECT array_agg((CASE r.outcome WHEN 'duplicate' THEN 1 WHEN 'fork' THEN 2 ELSE 0 END
                              + CASE WHEN r.before_stored THEN 4 ELSE 0 END + CASE WHEN r.after_stored THEN 8 ELSE 0 END
                              + CASE WHEN r.stated THEN 16 ELSE 0 END)::int8 ORDER BY i.n),
                   array_agg(i.n ORDER BY i.n) FILTER (WHERE r.outcome = 'fork' OR cardinality(r.problems) > 0),
                   array_agg(coalesce(r.stored_hash, ''::bytea) ORDER BY i.n) FILTER (WHERE r.outcome = 'fork' OR cardinality(r.problems) > 0),
                   array_agg(array_to_string(r.problems, \(Self.problemSeparator)) ORDER BY i.n) FILTER (WHERE r.outcome = 'fork' OR cardinality(r.problems) > 0)
            FROM unnest(\(c.gateway), \(c.meter), \(c.epoch), \(c.seq), \(c.hash), \(c.prev), \(c.keyID), \(c.envelope), \(c.start), \(c.end),
                        \(c.imported), \(c.exported), \(c.quality), \(c.tariff), \(c.currency), \(c.priceScaled), \(c.pricePrecision),
                        \(c.amountExact), \(c.amountScale), \(c.record), \(c.receivedMillis), \(c.pricingError), \(c.exportPriceScaled),
                        \(c.exportAmountExact), \(c.exportAmountScale), \(c.lostFrom), \(c.lostTo), \(c.notAChainStart), \(c.prevMismatch),
                        \(c.nextMismatch))
                 WITH ORDINALITY AS i(g, m, e, seq, hash, prev, kid, env, s, t, imp, exp, q, tar, cur, ps, pp, ae, ascale, rec, rcv, perr,
                                      eps, eae, eas, lf, lt, m1, m2, m3, n)
            CROSS JOIN LATERAL metergate_add_reading(i.g, i.m, i.e, i.seq, i.hash, i.prev, i.kid, i.env, i.s, i.t, i.imp, i.exp, i.q,
                 i.tar, i.cur, i.ps, i.pp, i.ae, i.ascale, i.rec, i.rcv, NULLIF(i.perr, ''), i.eps, i.eae, i.eas, NULLIF(i.lf, -1),
                 NULLIF(i.lt, -1), i.m1, NULLIF(i.m2, ''), NULLIF(i.m3, '')) AS r
            """
        typealias Result = ([Int64]?, [Int64]?, [ByteBuffer]?, [String]?)
        let result: Result? = try await attempt("storing \(batch.count) readings") {
            var first: Result?
            for try await row in try await self.client.query(query, logger: self.logger).decode(Result.self) where first == nil { first = row }
            return first
        }
        let codes = result?.0 ?? []
        guard codes.count == batch.count else {
            throw .postgres(operation: "storing \(batch.count) readings", detail: "metergate_add_reading returned \(codes.count) outcomes")
        }
        var unusual: [Int: (storedHash: [UInt8], problems: [String])] = [:]
        if let positions = result?.1, let hashes = result?.2, let problems = result?.3, positions.count == hashes.count, positions.count == problems.count {
            for (k, n) in positions.enumerated() {
                unusual[Int(n) - 1] = (Array(hashes[k].readableBytesView), problems[k].isEmpty ? [] : problems[k].components(separatedBy: Self.problemSeparator))
            }
        }
        var outcomes = [LedgerOutcome](repeating: .duplicate, count: batch.count)
        for (k, i) in order.enumerated() {
            let code = codes[k]
            let r = batch[i].verified.record
            received[r.stream, default: SeqSet()].insert(r.seq)
            switch code & 3 {
            case 1: outcomes[i] = .duplicate
            case 2: outcomes[i] = .fork(storedHash: unusual[k]?.storedHash ?? [])
            default:
                // Stored seqs next to this one, whichever process stored them.
                if code & 4 != 0 { received[r.stream, default: SeqSet()].insert(r.seq - 1) }
                if code & 8 != 0 { received[r.stream, default: SeqSet()].insert(r.seq + 1) }
                if code & 16 != 0, let lost = r.storeLost { statedLost[r.stream, default: SeqSet()].insert(lost.seqs) }
                outcomes[i] = .stored(chainProblems: unusual[k]?.problems ?? [])
            }
        }
        return outcomes
    }

    public func reject(topic: String, payload: [UInt8], reason: String, receivedMillis: Int64) async throws(LedgerError) {
        let prefix = ByteBuffer(bytes: payload.prefix(LedgerRules.rejectedPrefixBytes))
        let digest = ByteBuffer(bytes: Array(SHA256.hash(data: payload)))
        let query: PostgresQuery = """
            INSERT INTO rejected(topic, reason, payload, seen_ms, payload_bytes, payload_sha256)
            VALUES (\(LedgerRules.keptTopic(topic)), \(LedgerRules.keptReason(reason)), \(prefix), \(receivedMillis), \(Int64(payload.count)), \(digest))
            """
        try await attempt("keeping a rejected payload") { try await self.client.query(query, logger: self.logger) }
    }

    // MARK: Gaps

    public func gaps(of stream: StreamKey, fromFirstSeq: Bool) async throws(LedgerError) -> [ClosedRange<UInt64>] {
        if received[stream] == nil { try await load(stream) }
        return received[stream]?.gaps(fromFirstSeq: fromFirstSeq, excluding: statedLost[stream] ?? SeqSet()) ?? []
    }

    public func refreshedGaps(of stream: StreamKey, fromFirstSeq: Bool) async throws(LedgerError) -> [ClosedRange<UInt64>] {
        try await load(stream)
        return try await gaps(of: stream, fromFirstSeq: fromFirstSeq)
    }

    /// Reads a stream's received seqs (as ranges, computed by the database) and its stated losses.
    private func load(_ stream: StreamKey) async throws(LedgerError) {
        let ranges: PostgresQuery = """
            SELECT min(seq), max(seq) FROM (
                SELECT seq, seq - row_number() OVER (ORDER BY seq) AS run FROM readings
                WHERE gateway = \(stream.gateway) AND meter = \(stream.meter) AND epoch = \(stream.epoch)) AS s
            GROUP BY run
            """
        let lost: PostgresQuery = """
            SELECT from_seq, to_seq FROM stated_lost WHERE gateway = \(stream.gateway) AND meter = \(stream.meter) AND epoch = \(stream.epoch)
            """
        let (seqs, stated) = try await attempt("reading the seqs of \(stream)") {
            var seqs = SeqSet()
            for try await (low, high) in try await self.client.query(ranges, logger: self.logger).decode((Int64, Int64).self) {
                seqs.insert(UInt64(bitPattern: low)...UInt64(bitPattern: high))
            }
            var stated = SeqSet()
            for try await (low, high) in try await self.client.query(lost, logger: self.logger).decode((Int64, Int64).self) where low <= high {
                stated.insert(UInt64(bitPattern: low)...UInt64(bitPattern: high))
            }
            return (seqs, stated)
        }
        received[stream] = seqs
        statedLost[stream] = stated.ranges.isEmpty ? nil : stated
    }

    public func claimReplay(of stream: StreamKey, seqs: ClosedRange<UInt64>, by claimant: String, nowMillis: Int64,
                            untilMillis: Int64) async throws(LedgerError) -> Bool {
        let query: PostgresQuery = """
            INSERT INTO replay_claims(gateway, meter, epoch, from_seq, to_seq, claimed_by, until_ms)
            VALUES (\(stream.gateway), \(stream.meter), \(stream.epoch), \(Int64(bitPattern: seqs.lowerBound)), \(Int64(bitPattern: seqs.upperBound)),
                    \(claimant), \(untilMillis))
            ON CONFLICT (gateway, meter, epoch, from_seq) DO UPDATE SET to_seq = excluded.to_seq, claimed_by = excluded.claimed_by,
                until_ms = excluded.until_ms
            WHERE replay_claims.until_ms <= \(nowMillis) OR replay_claims.claimed_by = excluded.claimed_by
            RETURNING claimed_by
            """
        return try await attempt("claiming a replay of \(stream)") {
            var claimed = false
            for try await _ in try await self.client.query(query, logger: self.logger) { claimed = true }
            return claimed
        }
    }

    public func latestStreams() async throws(LedgerError) -> [StreamKey] {
        let query: PostgresQuery = """
            SELECT gateway, meter, epoch FROM (
                SELECT gateway, meter, epoch, row_number() OVER (PARTITION BY gateway, meter ORDER BY max(received_ms) DESC, epoch) AS n
                FROM readings GROUP BY gateway, meter, epoch) AS s
            WHERE n = 1 ORDER BY gateway, meter
            """
        return try await attempt("reading the latest streams") {
            var result: [StreamKey] = []
            for try await (g, m, e) in try await self.client.query(query, logger: self.logger).decode((String, String, String).self) {
                result.append(StreamKey(gateway: g, meter: m, epoch: e))
            }
            return result
        }
    }

    public func statedLostSeqs() async throws(LedgerError) -> [StreamKey: [ClosedRange<UInt64>]] {
        let streams: [StreamKey] = try await attempt("reading stated losses") {
            var result: [StreamKey] = []
            for try await (g, m, e) in try await self.client.query("SELECT DISTINCT gateway, meter, epoch FROM stated_lost", logger: self.logger)
                .decode((String, String, String).self) { result.append(StreamKey(gateway: g, meter: m, epoch: e)) }
            return result
        }
        var result: [StreamKey: [ClosedRange<UInt64>]] = [:]
        for stream in streams {
            try await load(stream)
            let have = received[stream] ?? SeqSet()
            let missing = (statedLost[stream]?.ranges ?? []).flatMap { have.missing(in: $0) }
            if !missing.isEmpty { result[stream] = missing }
        }
        return result
    }
}

/// `metergate_add_reading`'s arguments for a batch, one array per parameter (`unnest` turns them back into rows).
/// Arrays hold no NULLs here: '' and -1 stand for none and the query turns them back into NULL.
struct AddReadingColumns {
    var gateway: [String] = [], meter: [String] = [], epoch: [String] = [], seq: [Int64] = []
    var hash: [ByteBuffer] = [], prev: [ByteBuffer] = [], keyID: [String] = [], envelope: [String] = []
    var start: [Int64] = [], end: [Int64] = [], imported: [Int64] = [], exported: [Int64] = [], quality: [String] = []
    var tariff: [String] = [], currency: [String] = [], priceScaled: [Int64] = [], pricePrecision: [Int64] = []
    var amountExact: [Int64] = [], amountScale: [Int64] = [], record: [ByteBuffer] = [], receivedMillis: [Int64] = []
    var pricingError: [String] = [], exportPriceScaled: [Int64] = [], exportAmountExact: [Int64] = [], exportAmountScale: [Int64] = []
    var lostFrom: [Int64] = [], lostTo: [Int64] = [], notAChainStart: [String] = [], prevMismatch: [String] = [], nextMismatch: [String] = []

    mutating func append(_ entry: LedgerEntry, tariff t: Tariff) {
        let r = entry.verified.record
        let p = PricedReading(r, tariff: t)
        gateway.append(r.stream.gateway); meter.append(r.stream.meter); epoch.append(r.stream.epoch); seq.append(Int64(bitPattern: r.seq))
        hash.append(ByteBuffer(bytes: entry.verified.hash)); prev.append(ByteBuffer(bytes: r.prev)); keyID.append(r.keyID)
        envelope.append(entry.verified.envelope.rawValue)
        start.append(r.startMillis); end.append(r.endMillis); imported.append(r.importDelta.rawValue); exported.append(r.exportDelta.rawValue)
        quality.append(r.quality.rawValue); tariff.append(t.name); currency.append(t.currency)
        priceScaled.append(p.price.scaled); pricePrecision.append(Int64(p.price.precision))
        amountExact.append(p.amount.exact); amountScale.append(Int64(p.amount.scale))
        record.append(ByteBuffer(bytes: entry.envelope)); receivedMillis.append(entry.receivedMillis); pricingError.append(p.pricingError ?? "")
        exportPriceScaled.append(p.exportPrice.scaled); exportAmountExact.append(p.exportAmount.exact); exportAmountScale.append(Int64(p.exportAmount.scale))
        lostFrom.append(r.storeLost.map { Int64(bitPattern: $0.seqs.lowerBound) } ?? -1)
        lostTo.append(r.storeLost.map { Int64(bitPattern: $0.seqs.upperBound) } ?? -1)
        notAChainStart.append(LedgerRules.notAChainStart)
        prevMismatch.append(r.seq > 1 ? LedgerRules.prevMismatch(seq: r.seq) : "")
        nextMismatch.append(r.seq < UInt64.max ? LedgerRules.prevMismatch(seq: r.seq + 1) : "")
    }
}
