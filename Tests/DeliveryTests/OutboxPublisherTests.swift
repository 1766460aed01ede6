import Delivery
import Foundation
import MeterGateTesting
import Outbox
import TestSupport
import Testing

/// The drain logic on its own: an in-memory outbox and an in-memory sink the test drives (sessions,
/// acknowledgements, refusals, replay requests). The same logic runs on MQTT in MQTTTests.
@Suite(.timeLimit(.minutes(5))) struct OutboxPublisherTests {
    let store = InMemoryOutbox()

    func appendRecords(_ count: Int, meters: Int = 2) async throws {
        for i in 0..<count { _ = try await store.append(meter: "m\(i % meters)", chainedRecord("m\(i % meters)")) }
    }

    /// Polls until `condition` holds (the publisher runs on its own task); throws after 20 s, so that the checks
    /// after it never index what did not come.
    func until(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
        throw TimedOut(what: what)
    }

    @Test func recordsGoOutInStoreOrderNeverMoreThanTheWindowAndAreDeliveredWhenAcknowledged() async throws {
        try await appendRecords(30)
        let sink = InMemorySink(maxInflight: 4)
        let publisher = OutboxPublisher(store: store, sink: sink, configuration: .init(window: 16, flushInterval: .milliseconds(10)))
        let run = Task { try await publisher.run() }
        sink.connect()
        var acknowledged = 0
        while acknowledged < 30 {
            try await until("records were sent") { sink.sent.count > acknowledged }
            let waiting = Array(sink.sent[acknowledged...])
            #expect(waiting.count <= 4, "the sink's own maximum caps the window")
            sink.acknowledge(waiting.map(\.ticket))
            acknowledged += waiting.count
        }
        try await until("all were committed delivered") { try await store.stats().delivered == 30 }
        for meter in ["m0", "m1"] {
            let stored = try await store.records(meter: meter, seqs: 1...100, limit: 100)
            #expect(sink.sent.filter { $0.meter == meter }.map(\.bytes) == stored.map(\.bytes), "\(meter): each once, in order")
        }
        #expect(await publisher.counters.maxInflight <= 4)
        run.cancel()
        try await run.value
    }

    @Test func aDroppedSessionReturnsItsUnacknowledgedRecordsAndTheNextSendsThemAgain() async throws {
        try await appendRecords(6, meters: 1)
        let sink = InMemorySink(maxInflight: 8)
        let publisher = OutboxPublisher(store: store, sink: sink, configuration: .init(window: 8, flushInterval: .milliseconds(10)))
        let run = Task { try await publisher.run() }
        sink.connect()
        try await until("six were sent") { sink.sent.count == 6 }
        sink.acknowledge(sink.sent.prefix(2).map(\.ticket))
        sink.disconnect(reason: "cable pulled")
        try await until("four returned to pending") { await publisher.counters.returnedToPending == 4 }
        #expect(try await store.stats().delivered == 2)
        sink.connect()
        try await until("the four went out again") { sink.sent.count == 10 }
        let again = Array(sink.sent[6...])
        #expect(again.map(\.bytes) == sink.sent[2..<6].map(\.bytes), "the same records, the same bytes, in order")
        // A late acknowledgement from the dropped session counts for nothing.
        sink.acknowledge([sink.sent[2].ticket])
        sink.acknowledge(again.map(\.ticket))
        try await until("all six delivered") { try await store.stats().delivered == 6 }
        #expect(await publisher.counters.delivered == 6)
        run.cancel()
        try await run.value
    }

    /// On a clock the test steps, with ticks by hand: the refused record is not sent again before the refusal pause
    /// has passed, however often the publisher ticks, and goes first once it has.
    @Test func aRefusedRecordStaysPendingAndGoesFirstAfterThePause() async throws {
        try await appendRecords(3, meters: 1)
        let sink = InMemorySink(maxInflight: 8, ticksByHand: true)
        let clock = ManualClock()
        let publisher = OutboxPublisher(store: store, sink: sink,
                                        configuration: .init(window: 8, flushInterval: .milliseconds(10), refusalPause: .milliseconds(100)),
                                        clock: clock)
        let run = Task { try await publisher.run() }
        sink.connect()
        try await until("three were sent") { sink.sent.count == 3 }
        sink.acknowledge([sink.sent[0].ticket], refusal: "quota exceeded")
        sink.acknowledge(sink.sent[1...].map(\.ticket))
        try await until("the refusal was handled") { await publisher.counters.refused == 1 }
        // Ticks inside the pause: the two acknowledged ones are committed, the refused one waits.
        for _ in 0..<5 {
            clock.advance(by: .milliseconds(19))
            sink.tick()
        }
        try await until("five ticks handled") { await publisher.counters.ticks == 5 }
        #expect(try await store.stats().delivered == 2)
        #expect(sink.sent.count == 3, "sent again \(clock.elapsed) after the refusal, before its 100 ms pause had passed")
        clock.advance(by: .milliseconds(5))
        sink.tick()
        try await until("the refused one was sent again") { sink.sent.count == 4 }
        #expect(sink.sent[3].bytes == sink.sent[0].bytes)
        #expect(await publisher.counters.refused == 1)
        sink.acknowledge([sink.sent[3].ticket])
        try await until("all three delivered") { try await store.stats().delivered == 3 }
        run.cancel()
        try await run.value
    }

    @Test func aReplayRequestThroughTheSinkResendsDeliveredRecordsAndIsAnswered() async throws {
        try await appendRecords(5, meters: 1)
        let sink = InMemorySink(maxInflight: 8, acknowledgesAtOnce: true)
        let publisher = OutboxPublisher(store: store, sink: sink,
                                        configuration: .init(window: 8, acceptReplayRequests: true, flushInterval: .milliseconds(10)))
        let run = Task { try await publisher.run() }
        sink.connect()
        try await until("all delivered") { try await store.stats().delivered == 5 }
        sink.receiveReplayRequest(Array(#"{"meter":"m0","from":2,"to":4}"#.utf8))
        try await until("three were replayed") { sink.sent.count == 8 }
        #expect(sink.sent[5...].map(\.bytes) == sink.sent[1..<4].map(\.bytes))
        let answer = String(decoding: try #require(sink.replies.first), as: UTF8.self)
        #expect(answer.contains("accepted"), "\(answer)")
        // Retained or unreadable requests are answered with a refusal and replay nothing.
        sink.receiveReplayRequest(Array(#"{"meter":"m0","from":1}"#.utf8), retained: true)
        sink.receiveReplayRequest(Array("not json".utf8))
        try await until("both were answered") { sink.replies.count == 3 }
        #expect(sink.replies[1...].allSatisfy { String(decoding: $0, as: UTF8.self).contains("refused") })
        #expect(sink.sent.count == 8)
        #expect(await publisher.counters.badReplayRequests == 2)
        run.cancel()
        try await run.value
    }
}
