import Accounting
import Foundation
import MeterCore
import Pulse
import TestSupport
import Synchronization
import Testing

/// Reads a recorded edge sequence: "<ns> <rising|falling>" per line, '#' comments.
func recordedEvents(_ name: String) throws -> [PulseCounter.Event] {
    let text = try String(contentsOfFile: "\(repositoryRoot)/Tests/PulseTests/Fixtures/\(name).events", encoding: .utf8)
    return try text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
        let parts = line.split(separator: " ")
        guard parts.count == 2, let t = UInt64(parts[0]), let edge = PulseCounter.Edge(rawValue: String(parts[1])) else {
            throw ParseError(line: String(line))
        }
        return PulseCounter.Event(timestampNanos: t, edge: edge)
    }
}

struct ParseError: Error { let line: String }

func count(_ events: [PulseCounter.Event], _ configuration: PulseCounter.Configuration = .init()) -> PulseCounter {
    var counter = PulseCounter(configuration: configuration)
    for event in events { counter.handle(event) }
    return counter
}

@Suite(.timeLimit(.minutes(5))) struct PulseCounterTests {
    @Test func cleanPulsesAreCountedAndGivePower() throws {
        let events = try recordedEvents("clean-3600W-1000imp")
        let counter = count(events)
        #expect(counter.count == 30)
        #expect(counter.rejectedEdges == 0)
        #expect(counter.powerWatts(impulsesPerKilowattHour: 1000) == 3600)
        #expect(count(events, .none).count == 30)
    }

    @Test func contactBounceIsDebounced() throws {
        let events = try recordedEvents("bouncing-contact")
        #expect(count(events).count == 30)
        #expect(count(events).rejectedEdges > 0)
        #expect(count(events, .none).count > 30) // without debounce every bounce is a "pulse"
    }

    @Test func noiseSpikesAreNotPulses() throws {
        let events = try recordedEvents("noise-spikes")
        #expect(count(events).count == 10)
        #expect(count(events, .none).count == 20)
    }

    @Test func aDropoutWithinAPulseDoesNotCountTwice() {
        var counter = PulseCounter()
        let ms: UInt64 = 1_000_000
        for (t, edge) in [(0, PulseCounter.Edge.rising), (25, .falling), (27, .rising), (55, .falling), (400, .rising), (440, .falling)] {
            counter.handle(.init(timestampNanos: UInt64(t) * ms, edge: edge))
        }
        #expect(counter.count == 2)
    }

    @Test func edgesOutOfOrderOrRepeatedAreRejected() {
        var counter = PulseCounter()
        let ms: UInt64 = 1_000_000
        let strayFalling = counter.handle(.init(timestampNanos: 100 * ms, edge: .falling))
        let leading = counter.handle(.init(timestampNanos: 200 * ms, edge: .rising))
        let earlier = counter.handle(.init(timestampNanos: 150 * ms, edge: .falling)) // before the last edge
        let trailing = counter.handle(.init(timestampNanos: 260 * ms, edge: .falling))
        #expect([strayFalling, leading, earlier, trailing] == [false, false, false, true])
        #expect(counter.count == 1 && counter.rejectedEdges == 2)
    }

    @Test func pulsesBecomeExactEnergyAtAnyPulseConstant() throws {
        // 375 imp/kWh: one pulse is 2666.67 mWh, three are exactly 8 Wh.
        let settings = SourceSettings(meter: try MeterID(validating: "s0-1"), source: .pulse, grid: try IntervalGrid(periodMillis: 60_000))
        var meter = CounterAccountant(configuration: .init(settings: settings, scale: .impulses(perKilowattHour: 375), ratedPowerWatts: 100_000))
        let start = Timestamp(wallNanos: 1_767_225_600_000_000_000, monotonicNanos: 1_000_000_000)
        func at(_ s: Int64) -> Timestamp { Timestamp(wallNanos: start.wallNanos + s * 1_000_000_000, monotonicNanos: start.monotonicNanos + UInt64(s) * 1_000_000_000) }
        _ = try meter.add(.init(time: start, importCount: 0))
        var deltas: [Int64] = []
        for (s, pulses) in [(60, 1), (120, 2), (180, 3), (240, 375)] as [(Int64, UInt64)] {
            deltas += try meter.add(.init(time: at(s), importCount: pulses)).map(\.result.importDelta.rawValue)
        }
        #expect(deltas == [2_666, 2_667, 2_667, 992_000])
        #expect(deltas.reduce(0, +) == 1_000_000)
    }
}

@Suite(.timeLimit(.minutes(5))) struct PulseInputProcessorTests {
    func configuration(_ dir: TemporaryDirectory, impulses: UInt64 = 1000) -> PulseInputConfiguration {
        PulseInputConfiguration(name: "s0-1", chip: "gpiochip0", offset: 17, impulsesPerKilowattHour: impulses,
                                countFile: dir.file("s0-1.count"))
    }

    @Test func aRestartLosesNoCountedPulse() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let events = try recordedEvents("bouncing-contact")
        var first = try PulseInputProcessor(configuration: configuration(dir))
        let updates = try first.handle(Array(events.prefix(100)))
        let countedBefore = try #require(updates.last?.count)
        // The process dies here; a new one starts from the count file.
        var second = try PulseInputProcessor(configuration: configuration(dir))
        #expect(second.counter.count == countedBefore)
        let rest = try second.handle(Array(events.dropFirst(100)))
        #expect(rest.last?.count == 30)
        #expect(try PulseCountStore(path: dir.file("s0-1.count"), input: "s0-1", impulsesPerKilowattHour: 1000).load() == 30)
        #expect(rest.allSatisfy { $0.input == "s0-1" })
    }

    @Test func aDamagedOrForeignCountFileIsAnErrorNotZero() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        dir.write("s0-1.count", "{\"count\": 12")
        let damaged = #expect(throws: PulseCountStore.StoreError.self) { try PulseInputProcessor(configuration: configuration(dir)) }
        #expect(damaged?.description.contains("refusing to start from zero") == true)
        try PulseCountStore(path: dir.file("s0-1.count"), input: "s0-1", impulsesPerKilowattHour: 800).save(5)
        let constant = #expect(throws: PulseCountStore.StoreError.self) { try PulseInputProcessor(configuration: configuration(dir)) }
        #expect(constant?.description.contains("800 imp/kWh") == true)
    }
}

/// Replays a recorded sequence a few edges at a time, then reports no more edges (after a short wait, as a
/// quiet line would). Optionally fails once, to show that errors are reported.
final class RecordedEdgeSource: PulseEdgeSource {
    private let remaining: Mutex<ArraySlice<PulseCounter.Event>>

    init(_ events: [PulseCounter.Event]) { remaining = Mutex(events[...]) }

    func waitForEdges(timeoutNanos: Int64) throws -> [PulseCounter.Event] {
        let chunk = remaining.withLock { events in
            let chunk = Array(events.prefix(7))
            events = events.dropFirst(chunk.count)
            return chunk
        }
        if chunk.isEmpty { usleep(UInt32(min(timeoutNanos / 1000, 10_000))) }
        return chunk
    }
}

@Suite(.timeLimit(.minutes(5))) struct PulseInputReaderTests {
    @Test func theReaderThreadCountsPersistsAndStops() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let configuration = PulseInputConfiguration(name: "s0-2", chip: "unused", offset: 0, impulsesPerKilowattHour: 1000,
                                                    countFile: dir.file("s0-2.count"))
        try PulseCountStore(path: configuration.countFile, input: "s0-2", impulsesPerKilowattHour: 1000).save(1_000)
        let reader = try PulseInputReader(configuration: configuration, source: RecordedEdgeSource(try recordedEvents("bouncing-contact")))
        reader.start()
        var counts: [UInt64] = []
        for await update in reader.updates {
            counts.append(update.count)
            if update.count == 1_030 { break }
        }
        await reader.stop()
        await reader.stop()
        #expect(counts == Array(1_001...1_030))
        #expect(try PulseCountStore(path: configuration.countFile, input: "s0-2", impulsesPerKilowattHour: 1000).load() == 1_030)
    }
}
