import Delivery
import MQTT
import Signing
import Testing
@testable import Ledger

@Suite(.timeLimit(.minutes(5))) struct SeqSetTests {
    @Test func rangesMergeAndGapsAreTheHoles() {
        var s = SeqSet()
        let r1 = s.insert(3)
        #expect(r1)
        let r2 = s.insert(5)
        #expect(r2)
        let r3 = s.insert(5)
        #expect(!r3)
        #expect(s.ranges == [3...3, 5...5])
        #expect(s.gaps() == [1...2, 4...4])
        #expect(s.gaps(fromFirstSeq: false) == [4...4])
        s.insert(4)
        #expect(s.ranges == [3...5])
        s.insert(1); s.insert(2)
        #expect(s.ranges == [1...5] && s.gaps().isEmpty && s.count == 5 && s.highest == 5)
        s.insert(9)
        #expect(s.gaps() == [6...8])
        #expect(s.contains(9) && s.contains(1) && !s.contains(7) && !s.contains(10))
    }

    @Test func agreesWithASetOnRandomInsertions() {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<50 {
            var s = SeqSet()
            var reference = Set<UInt64>()
            for _ in 0..<200 {
                let seq = 1 + generator.next() % 150
                let r4 = s.insert(seq)
                #expect(r4 == reference.insert(seq).inserted)
            }
            let expanded = s.ranges.flatMap { Array($0) }
            #expect(expanded == reference.sorted())
            let top = reference.max()!
            let missing = (1...top).filter { !reference.contains($0) }
            #expect(s.gaps().flatMap { Array($0) } == missing)
            // Ranges never touch: adjacent ones would have been merged.
            for (a, b) in zip(s.ranges, s.ranges.dropFirst()) { #expect(a.upperBound + 1 < b.lowerBound) }
        }
    }
}

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite(.timeLimit(.minutes(5))) struct ReplaySchedulerTests {
    let a = StreamKey(gateway: "gw-1", meter: "main", epoch: "E1")
    let b = StreamKey(gateway: "gw-2", meter: "pv", epoch: "E9")
    let policy = ReplayPolicy(settleDelay: .seconds(1), retryInterval: .seconds(10), minimumSpacing: .milliseconds(200), maximumRange: 100)

    /// Asks the scheduler at `seconds` (outside #expect: `next` is mutating).
    func ask(_ s: inout ReplayScheduler, _ seconds: Double) -> ScheduledReplay? {
        s.next(now: .milliseconds(Int64((seconds * 1000).rounded())))
    }

    @Test func aGapIsAskedForAfterItSettlesAndAgainWhileItStaysOpen() {
        var s = ReplayScheduler(policy: policy)
        s.update(stream: a, gaps: [4...5], now: .seconds(0))
        let early = ask(&s, 0.5)                                        // may still arrive out of order
        #expect(early == nil)
        let first = ask(&s, 1)
        #expect(first == ScheduledReplay(stream: a, gateway: "gw-1", request: ReplayRequest(meter: "main", seqs: 4...5), attempt: 0))
        let waiting = ask(&s, 5)                                        // asked, waiting
        #expect(waiting == nil)
        let again = ask(&s, 11)                                         // still open: asked again
        #expect(again?.attempt == 1)
        s.update(stream: a, gaps: [], now: .seconds(12))                // filled
        let after = ask(&s, 30)
        #expect(after == nil)
        #expect(s.openGaps.isEmpty)
    }

    @Test func requestsAreRateLimitedOverAllStreams() {
        var s = ReplayScheduler(policy: policy)
        s.update(stream: a, gaps: [2...2, 7...9], now: .zero)
        s.update(stream: b, gaps: [1...3], now: .zero)
        var sent: [ScheduledReplay] = []
        // Ten polls 50 ms apart from 1 s: the 200 ms spacing lets three requests through (1.0, 1.2, 1.4).
        for i in 0..<10 {
            if let r = ask(&s, 1 + Double(i) * 0.05) { sent.append(r) }
        }
        #expect(sent.count == 3)
        #expect(Set(sent.map { "\($0.gateway) \($0.request)" }) == ["gw-1 main seq 2...2", "gw-1 main seq 7...9", "gw-2 pv seq 1...3"])
    }

    @Test func aPartlyFilledGapKeepsItsHistory() {
        var s = ReplayScheduler(policy: policy)
        s.update(stream: a, gaps: [10...20], now: .zero)
        let first = ask(&s, 1)
        #expect(first?.request.seqs == 10...20)
        s.update(stream: a, gaps: [15...20], now: .seconds(2))          // half the replay arrived
        let soon = ask(&s, 3)                                           // not asked again at once
        #expect(soon == nil)
        let later = ask(&s, 11)
        #expect(later?.request.seqs == 15...20)
    }

    @Test func aLongGapIsAskedForInPieces() {
        var s = ReplayScheduler(policy: policy)
        s.update(stream: a, gaps: [1...250], now: .zero)
        let first = ask(&s, 1)
        #expect(first?.request.seqs == 1...100)
        s.update(stream: a, gaps: [101...250], now: .seconds(2))
        let second = ask(&s, 11)
        #expect(second?.request.seqs == 101...200)
    }

    @Test func theRequestIsWhatThePublisherParses() throws {
        var s = ReplayScheduler(policy: policy)
        s.update(stream: a, gaps: [4...5], now: .zero)
        let due = try #require(ask(&s, 2))
        let parsed = try ReplayRequest(json: due.request.json)
        #expect(parsed.meter == "main" && parsed.seqs == 4...5)
    }
}
