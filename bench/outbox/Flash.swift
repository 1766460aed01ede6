import Foundation
import MeterCore
import Outbox

/// Bytes the kernel was asked to write for this process so far (`write_bytes` in /proc/self/io: pages dirtied for
/// the block layer, each counted once between two syncs).
func bytesWritten() -> Int64 {
    let io = (try? String(contentsOfFile: "/proc/self/io", encoding: .utf8)) ?? ""
    let line = io.split(separator: "\n").first { $0.hasPrefix("write_bytes:") } ?? ""
    return Int64(line.split(separator: " ").last ?? "0") ?? 0
}

/// A record of a realistic size: a JWS reading is about 940 bytes.
func flashRecord(_ meter: String) -> RecordBuilder {
    { position in
        var bytes = Array("\(meter)|\(position.epoch)|\(position.seq)|".utf8)
        bytes += [UInt8](repeating: 0x72, count: max(0, 940 - bytes.count))
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let hash = (0..<4).flatMap { i in withUnsafeBytes(of: h &+ UInt64(i)) { Array($0) } }
        return (bytes, hash)
    }
}

/// Flash wear in the steady state: the outbox already holds `kept` intervals of `meters` meters (30 days at 15 min
/// is 2,880: the default retention), then `intervals` more are appended as the gateway does (each meter's record
/// and its accounting state, `stateBytes` (a gateway's is about 500), in one transaction), claimed and marked delivered in one call.
/// What the process made the kernel write over those intervals, checkpoint into the database file included, is
/// set against the bytes of the records themselves.
func flashBenchmark(meters: Int, kept: Int, intervals: Int, stateBytes: Int) async throws {
    let work = NSTemporaryDirectory() + "outbox-flash-\(getpid())"
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: work) }
    let path = "\(work)/outbox.sqlite"
    let configuration = OutboxConfiguration(path: path, quotaBytes: 1 << 40)
    let names = (0..<meters).map { String(format: "meter-%03d", $0) }
    var closed = 0

    func interval(_ store: SQLiteOutbox) async throws -> Int {
        // A state that changes with every interval, as a gateway's does: SQLite skips rewriting a row whose new
        // value equals the stored one, so a constant state would cost nothing here.
        closed += 1
        let state = [UInt8]("\(closed)".utf8) + [UInt8](repeating: 0x7b, count: max(0, stateBytes - 8))
        var saving: [String: [UInt8]] = [:]
        for name in names { saving["accounting/\(name)"] = state }
        let appended = try await store.append(names.map { AppendRequest(meter: $0, build: flashRecord($0)) }, saving: saving)
        let claimed = try await store.claimPending(limit: meters)
        try await store.markDelivered(claimed.map(\.id), at: Date())
        return appended.reduce(0) { $0 + $1.bytes.count }
    }

    var store = try await SQLiteOutbox.open(path: path, configuration: configuration)
    for _ in 0..<kept { _ = try await interval(store) }
    await store.close()   // checkpoints the WAL into the file: the measured intervals start from a settled store
    store = try await SQLiteOutbox.open(path: path, configuration: configuration)
    let before = bytesWritten()
    var recordBytes = 0
    for _ in 0..<intervals { recordBytes += try await interval(store) }
    await store.close()   // what is still in the WAL would be checkpointed later: counted here
    let written = bytesWritten() - before
    let records = meters * intervals
    print(String(format: "flash     %d meters, %d intervals kept, %d appended, state %d B: %.0f B written per record, records %.0f B: %.2fx",
                 meters, kept, intervals, stateBytes, Double(written) / Double(records), Double(recordBytes) / Double(records),
                 Double(written) / Double(recordBytes)))
}
