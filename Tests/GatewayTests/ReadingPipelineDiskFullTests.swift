import Foundation
@testable import Gateway
import Logging
import MeterCore
import Outbox
import Signing
import TestSupport
import Testing

/// The pipeline on a real SQLite outbox that fills up: closed intervals wait and are stored once it takes writes again.
@Suite(.timeLimit(.minutes(5))) struct ReadingPipelineDiskFullTests {
    @Test func intervalsClosedWhileTheOutboxIsFullAreStoredOnceItTakesWritesAgain() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let path = dir.write("gw.yaml", """
            gateway: { id: gw, board: sim, state_dir: \(dir.path)/state, interval: 1s }
            buses:
              - { id: b, tcp: { host: 127.0.0.1, port: 1502 } }
            meters:
              - { id: m1, bus: b, unit: 1, profile: eastron-sdm630, poll: 250ms }
            metrics: { enabled: false }
            mqtt: { host: 127.0.0.1 }
            signing: { key: \(dir.path)/k.key }
            """)
        let config = try GatewayConfig.load(path: path, boardDirectories: ["\(repositoryRoot)/boards"],
                                            profileDirectories: ["\(repositoryRoot)/profiles"])
        // A real outbox with a page limit: SQLITE_FULL once the filler below takes the last pages.
        let store = try await SQLiteOutbox.open(path: dir.file("outbox.sqlite"), configuration: OutboxConfiguration(retention: .zero),
                                                options: .init(maxPageCount: 48))
        func fill() async -> Int {
            var n = 0
            while n < 10_000 {
                do {
                    _ = try await store.append(meter: "filler") { position in
                        let bytes = Array("filler \(position.seq) \(String(repeating: "f", count: 1500))".utf8)
                        return (bytes, Array(bytes.prefix(32)))
                    }
                    n += 1
                } catch { return n }
            }
            return n
        }
        // Frees the filler's pages: delivered long ago, expired by retention; the readings stay pending.
        func free() async throws {
            let claimed = try await store.claimPending(limit: 100_000)
            try await store.markDelivered(claimed.filter { $0.meter == "filler" }.map(\.id), at: Date(timeIntervalSinceNow: -10))
            try await store.releaseInflight(claimed.filter { $0.meter != "filler" }.map(\.id))
            _ = try await store.maintain(now: Date())
        }
        let pipeline = try await ReadingPipeline(config: config, key: .generate(.eddsa), store: store, bootID: nil,
                                                 logger: Logger(label: "test"), appended: {})
        // 3600 W: 1 Wh (1000 mWh) per second, read four times a second for 20 s; the outbox is full from 5 s to 12 s.
        var refused = false
        let start: Int64 = 1_800_000_000_000_000_000
        for tick in 0...80 {
            let seconds = Double(tick) / 4
            if tick == 20 { #expect(await fill() > 0) }
            if tick == 48 { try await free() }
            let time = Timestamp(wallNanos: start + Int64(seconds * 1e9), monotonicNanos: UInt64(1e12 + seconds * 1e9))
            await pipeline.accept(Sample(meter: try MeterID(validating: "m1"), time: time, values: [.energyImport: 1000 + seconds, .power: 3600]))
            // As `run()` does when no more input is queued; forced, so the retry delay after a failure (wall
            // time) does not stretch this test.
            await pipeline.commit(force: true)
            if tick == 40 { refused = await pipeline.lastAppendError != nil }
        }
        #expect(refused, "the appends while full were not refused")
        #expect(await pipeline.lastAppendError == nil)
        let records = try await store.records(meter: "m1", seqs: 1...1000, limit: 1000)
        await store.close()
        let payloads = try records.map { try JSONSerialization.jsonObject(with: Data(JWSRecord($0.bytes).payloadBytes)) as? [String: Any] ?? [:] }
        // Every second from the first to the last is in exactly one reading, in order, with its energy.
        #expect(records.count >= 19, "\(records.count) readings")
        for (a, b) in zip(payloads, payloads.dropFirst()) {
            #expect(b["start_ms"] as? Int64 == a["end_ms"] as? Int64, "\(a["end_ms"] ?? "-") → \(b["start_ms"] ?? "-")")
        }
        for p in payloads.dropFirst() {
            #expect(p["import_mwh"] as? Int64 == 1000, "\(p)")
        }
    }
}
