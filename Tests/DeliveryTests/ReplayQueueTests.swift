@testable import Delivery
import Testing

/// What a `cmd/replay` request may cost: clipped, merged, bounded, budgeted. Time is passed in, never slept.
@Suite(.timeLimit(.minutes(5))) struct ReplayQueueTests {
    let start = ContinuousClock.now
    let limits = ReplayLimits(maximumRecordsPerRequest: 100, budgetPerMinute: 600, maximumQueued: 3, repeatWindow: .seconds(10), repliesPerSecond: 2)

    func request(_ range: ClosedRange<UInt64>, _ meter: String = "m1") -> ReplayRequest { ReplayRequest(meter: meter, seqs: range) }

    @Test func everyIntegerParsesOrIsRefusedWithoutATrap() throws {
        for payload in [#"{"meter":"m1","from":1,"to":18446744073709551615}"#, #"{"meter":"m1","from":1000,"to":4611686018427387904}"#,
                        #"{"meter":"m1","from":9223372036854775807}"#] {
            var queue = ReplayQueue(limits: limits, now: start)
            let parsed = try? ReplayRequest(json: Array(payload.utf8))
            if let parsed {
                let decision = queue.admit(parsed, knownMeters: nil, now: start)
                #expect(decision.outcome == .accepted || decision.outcome == .clipped, "\(decision)")
                #expect(queue.remaining <= 100)
            }
        }
        for (payload, reason) in [(#"{"meter":"m1","from":1,"to":18446744073709551616}"#, "mistyped"),
                                  (#"{"meter":"m1","from":1,"to":18446744073709551615}"#, "beyond the highest seq"),
                                  (#"{"meter":"m1","from":-1,"to":5}"#, "mistyped"), (#"{"meter":"m1","from":0}"#, "seqs start at 1"),
                                  (#"{"meter":"m1","from":5,"to":4}"#, "empty"), (#"{"meter":"a/b","from":1}"#, "not a meter id"),
                                  (#"{"meter":"m1","from":1.5}"#, "mistyped"), (String(repeating: " ", count: 2000), "more than 1024")] {
            #expect(throws: ReplayRequest.ParseError.self) { try ReplayRequest(json: Array(payload.utf8)) }
            do { _ = try ReplayRequest(json: Array(payload.utf8)) } catch { #expect(error.description.contains(reason), "\(payload): \(error)") }
        }
    }

    @Test func longRangesAreClippedUnknownMetersAndAFullQueueRefused() {
        var queue = ReplayQueue(limits: limits, now: start)
        let clipped = queue.admit(request(1...1_000_000), knownMeters: ["m1", "m2"], now: start)
        #expect(clipped.outcome == .clipped && clipped.seqs == 1...100, "\(clipped)")
        #expect(clipped.reason?.contains("at most 100") == true)
        let unknown = queue.admit(request(1...2, "zz"), knownMeters: ["m1", "m2"], now: start)
        #expect(unknown.outcome == .refused && unknown.reason?.contains("no meter 'zz'") == true, "\(unknown)")
        #expect(queue.admit(request(1...5, "m2"), knownMeters: nil, now: start).outcome == .accepted)
        #expect(queue.admit(request(10...15, "m2"), knownMeters: nil, now: start).outcome == .accepted)
        let full = queue.admit(request(20...25, "m2"), knownMeters: nil, now: start)
        #expect(full.outcome == .refused && full.reason?.contains("the most is 3") == true, "\(full)")
        #expect(queue.cursors.count == 3)
    }

    @Test func identicalAndOverlappingRequestsAreMergedAndRecentOnesNotRepeated() {
        var queue = ReplayQueue(limits: limits, now: start)
        #expect(queue.admit(request(1...50), knownMeters: nil, now: start).outcome == .accepted)
        for _ in 0..<500 { #expect(queue.admit(request(1...50), knownMeters: nil, now: start).outcome == .merged) }
        let overlap = queue.admit(request(40...60), knownMeters: nil, now: start)
        #expect(overlap.outcome == .clipped && overlap.seqs == 51...60, "\(overlap)")
        #expect(queue.cursors.count == 2)
        // Served: asked again within the repeat window it is merged; after it, replayed again.
        let firstDone = queue.advanceFirst(past: 50, now: start)
        let secondDone = queue.advanceFirst(past: 60, now: start)
        #expect(firstDone && secondDone && queue.isEmpty)
        #expect(queue.admit(request(1...60), knownMeters: nil, now: start + .seconds(9)).outcome == .merged)
        #expect(queue.admit(request(1...60), knownMeters: nil, now: start + .seconds(10)).outcome == .accepted)
    }

    @Test func theBudgetPausesReplaysUntilItRefills() {
        var queue = ReplayQueue(limits: limits, now: start)
        #expect(queue.allowance(1000, now: start) == 600)
        queue.spend(600)
        #expect(queue.allowance(64, now: start) == 0)
        #expect(queue.allowance(64, now: start + .seconds(1)) == 10)      // 600 a minute: 10 a second
        #expect(queue.allowance(1000, now: start + .seconds(120)) == 600)  // never more than a minute's worth
        #expect(queue.remaining == 0)
    }

    @Test func replyRateIsLimitedAndSuppressedRepliesCounted() {
        var limiter = RateLimiter(perSecond: 2, now: start)
        #expect(limiter.allow(now: start).allowed)
        #expect(limiter.allow(now: start).allowed)
        for _ in 0..<5 { #expect(!limiter.allow(now: start).allowed) }
        let next = limiter.allow(now: start + .milliseconds(600))
        #expect(next.allowed && next.suppressedBefore == 5)
    }

    @Test func theReplyNamesTheOutcomeInJSON() {
        let decision = ReplayDecision(outcome: .clipped, meter: "m\"1", seqs: 1...100, reason: "at most 100 records a request")
        let text = String(decoding: decision.json, as: UTF8.self)
        #expect(text == #"{"from":1,"meter":"m\"1","outcome":"clipped","reason":"at most 100 records a request","to":100}"#)
    }
}
