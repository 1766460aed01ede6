import Accounting
import Foundation
import MeterCore
import Testing

/// Snapshots are saved as JSON written byte by byte (`jsonBytes`, short member names); `AccountingState.decoder()`
/// must read back exactly the snapshot, in every state the accounting can be in, as it reads what `JSONEncoder`
/// writes (the long names an earlier version saved).
@Suite(.timeLimit(.minutes(5))) struct StateJSONTests {
    /// Reads back what `jsonBytes` wrote and, as an earlier version saved it, what `JSONEncoder` writes (the long
    /// member names); the short form is at most 0.7 of the long one.
    func expectReadBack<S: Codable & Equatable>(_ snapshot: S, _ bytes: [UInt8]?, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let bytes = try #require(bytes, sourceLocation: sourceLocation)
        let decoder = AccountingState.decoder()
        #expect(try decoder.decode(S.self, from: Data(bytes)) == snapshot, "\(String(decoding: bytes, as: UTF8.self))", sourceLocation: sourceLocation)
        let long = try JSONEncoder().encode(snapshot)
        #expect(try decoder.decode(S.self, from: long) == snapshot, sourceLocation: sourceLocation)
        #expect(Double(bytes.count) <= 0.7 * Double(long.count), "\(bytes.count) B against \(long.count) B", sourceLocation: sourceLocation)
    }

    func expectReadBack(_ snapshot: CounterAccountant.Snapshot, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try expectReadBack(snapshot, snapshot.jsonBytes, sourceLocation: sourceLocation)
    }

    func expectReadBack(_ snapshot: PowerAccountant.Snapshot, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try expectReadBack(snapshot, snapshot.jsonBytes, sourceLocation: sourceLocation)
    }

    /// A 16-bit counter with an export channel through rollovers, a reset, an implausible jump, a gap, clock
    /// steps both ways and a restart in another boot, its snapshot read back after every reading.
    @Test(arguments: [nil, "boot-\"a\"\\\n"] as [String?])
    func counterSnapshotsReadBackInEveryState(bootID: String?) throws {
        let configuration = CounterAccountant.Configuration(
            settings: settings("m-1", periodMillis: 60_000, maximumGap: 3 * minute), scale: .wattHours(1, per: 10), range: .bits(16),
            hasExportCounter: true, ratedPowerWatts: 5_000.25)
        var meter = CounterAccountant(configuration: configuration, bootID: bootID)
        try expectReadBack(meter.snapshot())
        var events: [AccountingEvent] = []
        var count: UInt64 = 65_000, export: UInt64 = 7
        var shift: Int64 = 0, skipped: Int64 = 0
        for step in Int64(1)...60 {
            switch step {
            case 10: count = 10                    // reset (counter cleared)
            case 20: count = (count + 9_000) % 65_536   // implausible for 20 s at 5 kW
            case 30: skipped = 10 * minute         // a gap
            case 35: shift = 9 * second            // wall clock forward
            case 45: shift = -30 * second          // and back
            case 55: count = 40_000                // another meter (a replacement, known by its identity)
            default: count = (count + 97) % 65_536  // rolls over now and then
            }
            export += UInt64(step % 3)
            let offset = step * 20 * second + step * 1_234_567 + skipped
            events += try meter.add(.init(time: at(offset, wallShift: shift), importCount: count, exportCount: export,
                                          powerWatts: step % 4 == 0 ? nil : 1000.0 / Double(step) + 0.1), rebasing: step == 55).flatMap(\.events)
            try expectReadBack(meter.snapshot())
            if step == 50 {
                meter = try CounterAccountant(configuration: configuration, restoring: meter.snapshot(), bootID: "another-boot")
                try expectReadBack(meter.snapshot())
            }
        }
        events += meter.tick(now: at(70 * minute)).flatMap(\.events)
        try expectReadBack(meter.snapshot())
        // The run went through every kind of event the accounting records (so each was in some snapshot).
        let kinds = Set(events.map { "\($0)".prefix { $0 != "(" } })
        #expect(kinds.isSuperset(of: ["rollover", "reset", "implausibleIncrease", "gap", "clockStep", "restart", "lateEnergy", "meterReplaced"]), "\(kinds)")
    }

    @Test func powerSnapshotsReadBackInEveryState() throws {
        var rail = PowerAccountant(settings: settings("gpu0", source: .gpu, periodMillis: 60_000), bootID: "b")
        try expectReadBack(rail.snapshot())
        for step in Int64(1)...40 {
            _ = try rail.add(.init(time: at(step * 7 * second), powerWatts: step % 5 == 0 ? 0 : 1e-7 * Double(step * step * step) + 123.456))
            try expectReadBack(rail.snapshot())
        }
    }
}
