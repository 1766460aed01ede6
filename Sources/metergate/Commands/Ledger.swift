import ArgumentParser
import ConfigFile
import Foundation
import Ledger
import LedgerPostgres
import Logging
import MQTT
import MeterCore
import Signing
import UnixSignals

/// `metergate ledger`: the reference settlement consumer, and `metergate ledger export` for its CSV.
struct Ledger: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The reference settlement consumer: verified readings into a per-meter, per-interval ledger (SQLite or PostgreSQL), exported as CSV.",
        subcommands: [LedgerConsume.self, LedgerExport.self],
        defaultSubcommand: LedgerConsume.self)
}

/// `metergate ledger [consume]`: subscribe, verify, store, ask for replays of gaps.
struct LedgerConsume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Subscribe to readings, verify each one, keep it in the ledger and ask the gateway to replay gaps.",
        discussion: """
            Each reading is verified (keys trusted per gateway from --trust, following signed rotations on the keys \
            topics, and/or --key for every gateway; one is required) and stored once per \
            (gateway, meter, epoch, seq): a repeated delivery changes nothing; a different record under a stored key \
            is kept aside as a fork, never overwriting. Missing seqs are asked for on metergate/v1/<gateway>/cmd/replay, \
            at most one request per --replay-spacing, again every --replay-retry while the gap stays open. With \
            --share GROUP the readings are taken through the MQTT v5 shared subscription $share/GROUP/..., so several \
            consumers split the load; consumers of one group share one --db (a PostgreSQL database, or a SQLite file on one \
            machine), so duplicates and gaps are judged over everything the group received, and a gap is asked for by one of them. Stops on SIGINT/SIGTERM; exit 2 on usage errors.
            """)

    @OptionGroup var connection: BrokerOptions
    @OptionGroup var trusted: TrustOptions

    @OptionGroup var database: LedgerDatabaseOptions

    @Option(help: "The gateway id to follow (+ for all).")
    var gateway: String = "+"


    @Option(help: "A tariff file (YAML: flat or time_of_use); without one, amounts are 0.")
    var tariff: String?

    @Option(help: "An MQTT v5 shared-subscription group: consumers in one group split the readings.")
    var share: String?

    @Flag(name: .customLong("no-backfill"), help: "Do not ask for the seqs before the first one seen of a stream.")
    var noBackfill = false

    @Option(name: .customLong("replay-retry"), help: "Seconds before an open gap is asked for again.")
    var replayRetry: Double = 10

    @Option(name: .customLong("replay-spacing"), help: "Seconds between two replay requests (rate limit).")
    var replaySpacing: Double = 0.2

    @Option(name: .customLong("max-clock-skew"), help: "Seconds a record's interval may start after the ledger's clock before it is rejected.")
    var maxClockSkew: Int = 300

    @Option(help: "Stop after this many seconds (for scripts and tests).")
    var timeout: Double?

    func run() async throws {
        LoggingSystem.bootstrap { label in var h = StreamLogHandler.standardError(label: label); h.logLevel = .info; return h }
        if gateway != "+", let problem = Identifier.problem(with: gateway) { throw Failure.usage("--gateway '\(gateway)' \(problem)") }
        if let share, share.isEmpty || share.contains(where: { "/+#".contains($0) }) {
            throw Failure.usage("--share '\(share)': a group name must be non-empty and hold no '/', '+' or '#'")
        }
        guard replayRetry > 0, replaySpacing >= 0 else { throw Failure.usage("--replay-retry must be > 0 and --replay-spacing ≥ 0") }
        guard (1...86_400).contains(maxClockSkew) else { throw Failure.usage("--max-clock-skew must be 1 to 86400 seconds") }
        let (trustStore, keys) = try trusted.load(command: "ledger")
        let clientConfiguration = try connection.clientConfiguration(
            clientID: "metergate-ledger-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
            backoff: BackoffPolicy(initial: .milliseconds(200), maximum: .seconds(5)))
        var pricing = Tariff.none
        if let tariff {
            do { pricing = try TariffFile.load(path: tariff) } catch { throw Failure.usage("--tariff \(error)") }
        }
        let store = try await database.open(tariff: pricing)
        let client = MQTTClient(configuration: clientConfiguration, logger: Logger(label: "metergate.mqtt"))
        let consumer = LedgerConsumer(store: store, client: client, configuration: LedgerConsumerConfiguration(
            gateway: gateway, shareGroup: share, trust: TrustFollower(store: trustStore, keys: keys, path: trusted.trust),
            backfillFromFirstSeq: !noBackfill,
            replay: ReplayPolicy(retryInterval: .milliseconds(Int64(replayRetry * 1000)), minimumSpacing: .milliseconds(Int64(replaySpacing * 1000))),
            maximumClockSkew: .seconds(maxClockSkew)))
        let logger = Logger(label: "metergate.ledger")
        logger.info("ledger started", metadata: ["db": "\(store.location)", "filter": "\(consumer.configuration.readingFilter)", "tariff": "\(pricing.name)"])

        let work = Task { await consumer.run() }
        let limit = timeout
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { return } }
            if let limit { group.addTask { try? await Task.sleep(for: .milliseconds(Int64(limit * 1000))) } }
            group.addTask { await work.value }
            await group.next()
            // Waiting on work.value ignores cancellation: the consumer itself must be cancelled for the group to end.
            work.cancel()
            group.cancelAll()
        }
        let c = await consumer.counters
        let gaps = await consumer.openGaps
        let counts = try? await store.counts()
        let statedLost = (try? await store.statedLostSeqs()) ?? [:]
        await store.close()
        logger.info("ledger stopped", metadata: [
            "received": "\(c.received)", "stored": "\(c.stored)", "duplicates": "\(c.duplicates)", "forks": "\(c.forks)",
            "chain_breaks": "\(c.chainBreaks)", "rejected": "\(c.rejected)", "replay_requests": "\(c.replayRequests)", "unsynced_clock": "\(c.unsyncedClock)",
            "meter_replacements": "\(c.meterReplacements)",
            "ledger_rows": "\(counts?.readings ?? -1)",
            "stated_lost": "\(statedLost.map { "\($0.key): \($0.value.map { "\($0.lowerBound)...\($0.upperBound)" })" })", "open_gaps": "\(gaps.map { "\($0.key): \($0.value.map { "\($0.lowerBound)...\($0.upperBound)" })" })"])
    }
}

/// `metergate ledger export`: the ledger as CSV on standard output.
struct LedgerExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the ledger as CSV: one row per meter and interval.",
        discussion: """
            Columns: \(LedgerCSV.header.joined(separator: ", ")). Times are UTC (ISO 8601); kwh is exact to the mWh; \
            price_per_kwh and amount are in the currency's minor unit (e.g. cents) with the tariff's precision. \
            --from and --to select intervals by start, [from, to), as 2026-03-29 or 2026-03-29T01:00:00Z.
            """)

    @OptionGroup var database: LedgerDatabaseOptions

    @Option(help: "First interval start to include (UTC date or ISO 8601 time).")
    var from: String?

    @Option(help: "Interval starts before this are included (UTC date or ISO 8601 time).")
    var to: String?

    func run() async throws {
        func time(_ text: String?, _ name: String, _ fallback: Int64) throws -> Int64 {
            guard let text else { return fallback }
            guard let millis = LedgerCSV.parseTime(text) else { throw Failure.usage("--\(name) '\(text)': expected 2026-03-29 or 2026-03-29T01:00:00Z") }
            return millis
        }
        let fromMillis = try time(from, "from", .min)
        let toMillis = try time(to, "to", .max)
        guard fromMillis < toMillis else { throw Failure.usage("--from must be before --to") }
        let store = try await database.open(readOnly: true)
        let rows: [LedgerRow]
        do { rows = try await store.rows(fromMillis: fromMillis, toMillis: toMillis) } catch {
            await store.close()
            throw Failure.run("--db \(store.location): \(error)")
        }
        await store.close()
        FileHandle.standardOutput.write(Data(LedgerCSV.document(rows).utf8))
    }
}

/// `--db`: a SQLite file, or a PostgreSQL URL shared by several ledger processes.
struct LedgerDatabaseOptions: ParsableArguments {
    @Option(help: "The ledger: a SQLite file (created when missing) or postgresql://USER@HOST:PORT/DATABASE[?sslmode=disable|prefer|require|verify-full&sslrootcert=FILE].")
    var db: String

    @Option(name: .customLong("db-password-file"), help: "A file holding the PostgreSQL password (mode 600); else PGPASSWORD, then PGPASSFILE or ~/.pgpass.")
    var dbPasswordFile: String?

    /// Opens the ledger `--db` names; usage errors for a bad URL or password file, run errors for a database that
    /// cannot be reached or read.
    func open(tariff: Tariff = .none, readOnly: Bool = false) async throws -> any LedgerStorage {
        if PostgresLocation.isURL(db) {
            let target: PostgresLocation
            do { target = try PostgresLocation(url: db, passwordFile: dbPasswordFile) } catch { throw Failure.usage("--db: \(error)") }
            do { return try await PostgresLedgerStore.open(target, tariff: tariff, readOnly: readOnly) } catch { throw Failure.run("--db \(target): \(error)") }
        }
        if dbPasswordFile != nil { throw Failure.usage("--db-password-file is for a PostgreSQL --db (postgresql://…)") }
        if readOnly, !FileManager.default.fileExists(atPath: db) { throw Failure.usage("--db \(db): no such ledger") }
        do { return try await SQLiteLedgerStore.open(path: db, tariff: tariff, readOnly: readOnly) } catch { throw Failure.run("--db \(db): \(error)") }
    }
}
