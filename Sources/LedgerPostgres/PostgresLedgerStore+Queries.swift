import Ledger
import Logging
import MeterCore
import NIOCore
import PostgresNIO
import Signing

extension PostgresLedgerStore {
    public func rows(fromMillis: Int64, toMillis: Int64) async throws(LedgerError) -> [LedgerRow] {
        let query: PostgresQuery = """
            SELECT gateway, meter, epoch, seq, start_ms, end_ms, import_mwh, export_mwh, quality, tariff, currency,
                   price_scaled, price_precision, amount_exact, amount_scale, pricing_error,
                   export_price_scaled, export_amount_exact, export_amount_scale
            FROM readings WHERE start_ms >= \(fromMillis) AND start_ms < \(toMillis) ORDER BY start_ms, gateway, meter, epoch, seq
            """
        return try await attempt("reading the ledger's rows") {
            var rows: [LedgerRow] = []
            for try await row in try await self.client.query(query, logger: self.logger) {
                let (gateway, meter, epoch, seq, start, end, imported, exported, quality, tariff, currency) =
                    try row.decode((String, String, String, Int64, Int64, Int64, Int64, Int64, String, String, String).self)
                let cells = row.makeRandomAccess()
                let precision = try cells[12].decode(Int64.self)
                rows.append(LedgerRow(
                    gateway: gateway, meter: meter, epoch: epoch, seq: UInt64(bitPattern: seq), startMillis: start, endMillis: end,
                    importMilliwattHours: imported, exportMilliwattHours: exported, quality: quality, tariff: tariff, currency: currency,
                    price: Price(scaled: try cells[11].decode(Int64.self), precision: Int(precision)),
                    amount: Amount(exact: try cells[13].decode(Int64.self), scale: Int(try cells[14].decode(Int64.self))),
                    pricingError: try cells[15].decode(String?.self),
                    exportPrice: Price(scaled: try cells[16].decode(Int64?.self) ?? 0, precision: Int(precision)),
                    exportAmount: Amount(exact: try cells[17].decode(Int64?.self) ?? 0, scale: Int(try cells[18].decode(Int64?.self) ?? 0))))
            }
            return rows
        }
    }

    public func rejections() async throws(LedgerError) -> [LedgerRejection] {
        try await attempt("reading rejected payloads") {
            var result: [LedgerRejection] = []
            let query: PostgresQuery = "SELECT topic, reason, payload, payload_bytes, payload_sha256 FROM rejected ORDER BY id"
            for try await (topic, reason, payload, bytes, digest) in try await self.client.query(query, logger: self.logger)
                .decode((String, String, ByteBuffer, Int64?, ByteBuffer?).self) {
                result.append(LedgerRejection(topic: topic, reason: reason, prefix: Array(payload.readableBytesView), payloadBytes: bytes,
                                              payloadSHA256: digest.map { Array($0.readableBytesView) }))
            }
            return result
        }
    }

    public func forks() async throws(LedgerError) -> [LedgerFork] {
        try await attempt("reading forks") {
            var result: [LedgerFork] = []
            let query: PostgresQuery = "SELECT gateway, meter, epoch, seq, stored_hash, other_hash FROM forks ORDER BY gateway, meter, epoch, seq"
            for try await (g, m, e, seq, stored, other) in try await self.client.query(query, logger: self.logger)
                .decode((String, String, String, Int64, ByteBuffer, ByteBuffer).self) {
                result.append(LedgerFork(stream: StreamKey(gateway: g, meter: m, epoch: e), seq: UInt64(bitPattern: seq),
                                         storedHash: Array(stored.readableBytesView), otherHash: Array(other.readableBytesView)))
            }
            return result
        }
    }

    public func counts() async throws(LedgerError) -> LedgerCounts {
        try await attempt("counting the ledger's tables") {
            var counts = LedgerCounts(readings: 0, forks: 0, chainBreaks: 0, rejected: 0)
            let query: PostgresQuery = """
                SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM forks), (SELECT count(*) FROM chain_breaks),
                       (SELECT count(*) FROM rejected)
                """
            for try await (r, f, b, x) in try await self.client.query(query, logger: self.logger).decode((Int64, Int64, Int64, Int64).self) {
                counts = LedgerCounts(readings: r, forks: f, chainBreaks: b, rejected: x)
            }
            return counts
        }
    }

    /// Runs `body`, again on a new connection after a dropped one, for up to the reconnect window; every other
    /// failure (and the last dropped connection) becomes a ``LedgerError`` naming `operation` and the server's words.
    func attempt<T: Sendable>(_ operation: String, _ body: @escaping @Sendable () async throws -> T) async throws(LedgerError) -> T {
        let deadline = ContinuousClock.now + reconnectWindow
        var delay = Duration.milliseconds(100)
        while true {
            do {
                return try await Self.within(deadline, body)
            } catch {
                guard Self.isConnectionLoss(error), ContinuousClock.now + delay < deadline, !Task.isCancelled else {
                    throw .postgres(operation: operation, detail: Self.describe(error))
                }
                logger.warning("the database connection was lost; trying again", metadata: ["operation": "\(operation)", "error": "\(Self.describe(error))"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
            }
        }
    }

    /// No answer by the end of the reconnect window: the pool was still waiting for a connection.
    struct NoConnection: Error, CustomStringConvertible {
        var description: String { "no connection to the database could be made within the reconnect window" }
    }

    /// `body`, or ``NoConnection`` once `deadline` passes (the pool waits for a connection for as long as it is asked to).
    static func within<T: Sendable>(_ deadline: ContinuousClock.Instant, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(until: deadline)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw NoConnection() }
            return value
        }
    }

    /// A connection that broke or could not be made (the server restarting, a network cut), not a refused query.
    static func isConnectionLoss(_ error: any Error) -> Bool {
        // The pool's own error type lives in a module PostgresNIO does not export: it says no connection could be made.
        if String(reflecting: type(of: error)).contains("ConnectionPoolError") { return true }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .connectionError, .serverClosedConnection, .uncleanShutdown: return true
        case .server:
            // Class 08 (connection exception), and the server shutting down or starting up (57P01–57P03).
            let state = error.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state)
        default: return false
        }
    }

    /// PostgresNIO hides the server's words from `description`; these are what an operator needs.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return String(describing: error) }
        var parts = ["\(error.code)"]
        if let state = error.serverInfo?[.sqlState] { parts.append("SQLSTATE \(state)") }
        if let message = error.serverInfo?[.message] { parts.append(message) }
        if let detail = error.serverInfo?[.detail] { parts.append(detail) }
        if let underlying = error.underlying { parts.append(String(describing: underlying)) }
        return parts.joined(separator: ": ")
    }
}
