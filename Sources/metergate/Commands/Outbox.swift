import MeterCore
import ArgumentParser
import ConfigFile
import Foundation
import Gateway
import Outbox

/// `metergate outbox`: inspect and maintain the store-and-forward queue.
struct Outbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect the outbox: stats, export, vacuum.",
        discussion: "Safe beside a running gateway: nothing is moved. Records it has handed to MQTT and not yet seen "
            + "acknowledged count as pending here (inflight is the gateway's own state; its metrics show it).",
        subcommands: [Stats.self, Export.self, Vacuum.self])

    /// `metergate outbox stats`.
    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Counts by state and meter, the oldest unsent record, sizes.")

        @OptionGroup var location: OutboxLocation

        func run() async throws {
            let store = try await location.open()
            let stats = try await outboxCall { () async throws(OutboxError) in try await store.stats() }
            print(OutboxStatsText.render(stats, path: store.path, quota: try location.configuration()))
        }
    }

    /// `metergate outbox export`.
    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a range of a meter's records, one stored record per line, for `metergate verify`.")

        @OptionGroup var location: OutboxLocation
        @Option(help: "The meter whose records to export.") var meter: String
        @Option(help: "The first seq (default: the first stored).") var from: UInt64 = 1
        @Option(help: "The last seq (default: the last stored).") var to: UInt64 = UInt64(Int64.max)
        @Option(name: .shortAndLong, help: "Write to this file instead of standard output.") var output: String?

        func validate() throws {
            guard from >= 1 else { throw ValidationError("--from must be at least 1 (seqs start at 1)") }
            guard from <= to else { throw ValidationError("--from \(from) is after --to \(to)") }
        }

        func run() async throws {
            let store = try await location.open()
            var sink: FileHandle = .standardOutput
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: nil), let handle = FileHandle(forWritingAtPath: output) else {
                    throw Failure.run("cannot write \(output)")
                }
                sink = handle
            }
            var next = from
            var written = 0
            var buffer = Data()
            while next <= to {
                let first = next
                let batch = try await outboxCall { () async throws(OutboxError) in try await store.records(meter: meter, seqs: first...to, limit: 1000) }
                guard let last = batch.last else { break }
                for record in batch {
                    guard !record.bytes.contains(0x0A), !record.bytes.contains(0x0D) else {
                        throw Failure.run("meter \(meter) seq \(record.seq) contains a line break; it cannot be exported as one line")
                    }
                    buffer.append(contentsOf: record.bytes)
                    buffer.append(0x0A)
                }
                sink.write(buffer)
                buffer.removeAll(keepingCapacity: true)
                written += batch.count
                if last.seq == UInt64(Int64.max) { break }
                next = last.seq + 1
            }
            try? sink.synchronize()
            if written == 0 {
                throw Failure.run("no stored records of meter \(meter) in seq \(from)...\(to == UInt64(Int64.max) ? "end" : String(to))")
            }
            FileHandle.standardError.write(Data("exported \(written) record\(written == 1 ? "" : "s") of meter \(meter)\n".utf8))
        }
    }

    /// `metergate outbox vacuum`.
    struct Vacuum: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply retention and the quota, then compact the database file (VACUUM) and truncate its WAL.")

        @OptionGroup var location: OutboxLocation

        func run() async throws {
            let configuration = try location.configuration()
            let store = try await location.open()
            let before = try await outboxCall { () async throws(OutboxError) in try await store.stats() }
            let report = try await outboxCall { () async throws(OutboxError) in try await store.maintain(now: Date()) }
            try await outboxCall { () async throws(OutboxError) in try await store.vacuum() }
            let after = try await outboxCall { () async throws(OutboxError) in try await store.stats() }
            await store.close()
            print("expired \(report.expired) delivered record(s) past retention \(configuration.retention), pruned \(report.prunedForQuota) for the quota")
            if report.droppedCount > 0 { print("dropped \(report.droppedCount) unsent record(s) (quota policy drop-oldest)") }
            print("file: \(OutboxStatsText.bytes(before.fileBytes)) -> \(OutboxStatsText.bytes(after.fileBytes))")
        }
    }
}

/// `--config FILE` or `--db PATH`: where the outbox is and how it is bounded.
struct OutboxLocation: ParsableArguments {
    @Option(name: .shortAndLong, help: "The gateway config file: the outbox path, retention and quota come from it.")
    var config: String?

    @Option(help: "The outbox database file (instead of --config).")
    var db: String?

    @Option(name: .customLong("boards"), help: "A directory of board files (with --config).")
    var boardDirectories: [String] = []

    @Option(name: .customLong("profiles"), help: "A directory of meter profiles (with --config).")
    var profileDirectories: [String] = []

    func validate() throws {
        guard (config == nil) != (db == nil) else { throw ValidationError("give either --config FILE or --db PATH") }
    }

    /// The gateway config, when given.
    func gatewayConfig() throws -> GatewayConfig? {
        guard let config else { return nil }
        do {
            return try GatewayConfig.load(
                path: config,
                boardDirectories: boardDirectories.isEmpty ? DataDirectories.boards() : boardDirectories,
                profileDirectories: profileDirectories.isEmpty ? DataDirectories.profiles() : profileDirectories)
        } catch {
            let count = error.errors.count
            throw Failure.usage("\(count) error\(count == 1 ? "" : "s") in the configuration:\n\(error.description)")
        }
    }

    var path: String {
        get throws { try db ?? gatewayConfig()!.outbox.path }
    }

    func configuration() throws -> OutboxConfiguration {
        try gatewayConfig()?.outbox ?? OutboxConfiguration()
    }

    func open(inspectOnly: Bool = true) async throws -> SQLiteOutbox {
        let path = try self.path
        let configuration = try configuration()
        guard FileManager.default.fileExists(atPath: path) else { throw Failure.run("no outbox at \(path)") }
        return try await outboxCall { () async throws(OutboxError) in
            try await SQLiteOutbox.open(path: path, configuration: configuration, options: .init(inspectOnly: inspectOnly))
        }
    }
}

/// Runs an outbox call, turning its error into a run failure (exit 1) that names what went wrong.
func outboxCall<T>(_ body: () async throws(OutboxError) -> T) async throws -> T {
    do { return try await body() } catch { throw Failure.run(error.description) }
}

/// The text of `metergate outbox stats`.
enum OutboxStatsText {
    static func render(_ s: OutboxStats, path: String, quota: OutboxConfiguration) -> String {
        var lines: [String] = []
        lines.append("outbox: \(path)")
        lines.append("epoch: \(s.epoch)")
        lines.append("file: \(bytes(s.fileBytes)) (database and WAL)")
        lines.append("records: \(s.totalRecords) (pending \(s.pending), inflight \(s.inflight), delivered \(s.delivered))")
        lines.append("quota: unsent \(bytes(s.unsentBytes)) + delivered \(bytes(s.deliveredBytes)) of \(bytes(quota.quotaBytes)), policy \(quota.quotaPolicy.rawValue)\(s.quotaAlarm ? "  ALARM: unsent records alone exceed the quota" : "")")
        lines.append("dropped by quota policy: \(s.droppedTotal)")
        if let oldest = s.oldestUnsent {
            let age = Int(Date().timeIntervalSince(oldest))
            lines.append("oldest unsent: \(ISO8601DateFormatter().string(from: oldest)) (\(age) s ago)")
        } else {
            lines.append("oldest unsent: none")
        }
        lines.append("meter                              last seq  first stored    pending   inflight  delivered")
        for m in s.streams {
            let first = m.firstStoredSeq.map(String.init) ?? "-"
            lines.append("\(pad(m.meter, 32)) \(lpad(String(m.lastSeq), 10)) \(lpad(first, 13)) \(lpad(String(m.pending), 10)) \(lpad(String(m.inflight), 10)) \(lpad(String(m.delivered), 10))")
        }
        return lines.joined(separator: "\n")
    }

    static func bytes(_ n: Int64) -> String {
        if n >= 1 << 30 { return String(format: "%.2f GiB", Double(n) / Double(1 << 30)) }
        if n >= 1 << 20 { return String(format: "%.2f MiB", Double(n) / Double(1 << 20)) }
        if n >= 1 << 10 { return String(format: "%.1f KiB", Double(n) / Double(1 << 10)) }
        return "\(n) B"
    }

    static func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
    static func lpad(_ s: String, _ width: Int) -> String { s.count >= width ? s : String(repeating: " ", count: width - s.count) + s }
}
