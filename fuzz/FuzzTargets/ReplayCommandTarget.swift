import Delivery

/// Bytes as they arrive on `cmd/replay`: the parser, then the replay queue with its bounds, as the publisher
/// drives it (admit, budget, advance past what a store returned).
///
/// Promises checked: nothing traps on any integer; a queued request never exceeds the per-request cap; the queue
/// never holds more than its bound; a parsed request writes back (``ReplayRequest/json``) to the same request.
public struct ReplayCommandTarget: FuzzTarget {
    public let name = "replay"
    let limits = ReplayLimits(maximumRecordsPerRequest: 1000, budgetPerMinute: 5000, maximumQueued: 4, repeatWindow: .seconds(10))

    public init() {}

    public func seeds(repositoryRoot root: String) -> [[UInt8]] {
        [#"{"meter":"m1","from":120,"to":180}"#, #"{"meter":"m1","from":7}"#, #"{"meter":"m1","from":1,"to":18446744073709551615}"#,
         #"{"meter":"m1","from":1000,"to":4611686018427387904}"#, #"{"meter":"m2","from":9223372036854775807}"#,
         #"{"meter":"m1","from":1,"to":1000000}"#].map { Array($0.utf8) }
    }

    public func run(_ input: [UInt8]) -> [String] {
        var findings: [String] = []
        var queue = ReplayQueue(limits: limits, now: .now)
        let start = ContinuousClock.now
        // The whole input as one payload, then each line as one, as a burst of requests would arrive.
        let payloads = [input] + input.split(separator: 0x0A).map(Array.init)
        for (i, payload) in payloads.enumerated() {
            guard let request = try? ReplayRequest(json: payload) else { continue }
            if let again = try? ReplayRequest(json: request.json), again != request {
                findings.append("\(request) wrote back as \(again)")
            }
            let now = start + .milliseconds(Int64(i) * 700)
            let decision = queue.admit(request, knownMeters: ["m1", "m2"], now: now)
            if let seqs = decision.seqs, decision.outcome == .accepted || decision.outcome == .clipped,
               seqs.upperBound - seqs.lowerBound >= limits.maximumRecordsPerRequest {
                findings.append("\(decision) exceeds the cap of \(limits.maximumRecordsPerRequest)")
            }
            if queue.cursors.count > limits.maximumQueued { findings.append("the queue holds \(queue.cursors.count)") }
            _ = queue.remaining
            // Serve some: a store that holds every third seq of the range.
            if let cursor = queue.first, let range = cursor.remaining {
                let allowed = queue.allowance(64, now: now)
                queue.spend(allowed)
                let last = range.lowerBound + min(range.upperBound - range.lowerBound, UInt64(max(0, allowed)) * 3)
                _ = queue.advanceFirst(past: last, now: now)
            }
            _ = decision.json
        }
        return findings
    }
}
