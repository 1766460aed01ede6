/// The seqs received of one stream, as sorted, disjoint, non-adjacent ranges, and the gaps between them.
public struct SeqSet: Sendable, Hashable {
    public private(set) var ranges: [ClosedRange<UInt64>] = []

    public init() {}

    public init(_ seqs: some Sequence<UInt64>) {
        for seq in seqs { insert(seq) }
    }

    public func contains(_ seq: UInt64) -> Bool {
        guard let i = index(after: seq) else { return ranges.last.map { $0.contains(seq) } ?? false }
        return i > 0 && ranges[i - 1].contains(seq)
    }

    /// Adds `seq`; false when it was already there.
    @discardableResult
    public mutating func insert(_ seq: UInt64) -> Bool {
        let i = index(after: seq) ?? ranges.count        // first range starting after seq
        if i > 0, ranges[i - 1].contains(seq) { return false }
        let joinsLeft = i > 0 && ranges[i - 1].upperBound + 1 == seq
        let joinsRight = i < ranges.count && seq + 1 == ranges[i].lowerBound
        switch (joinsLeft, joinsRight) {
        case (true, true):
            ranges[i - 1] = ranges[i - 1].lowerBound...ranges[i].upperBound
            ranges.remove(at: i)
        case (true, false):
            ranges[i - 1] = ranges[i - 1].lowerBound...seq
        case (false, true):
            ranges[i] = seq...ranges[i].upperBound
        case (false, false):
            ranges.insert(seq...seq, at: i)
        }
        return true
    }

    /// Adds every seq of `range`, joining the ranges it touches.
    public mutating func insert(_ range: ClosedRange<UInt64>) {
        var lower = range.lowerBound, upper = range.upperBound
        // Ranges that overlap or touch `range` (lowerBound 0 has nothing below it to touch).
        let first = ranges.firstIndex { $0.upperBound >= lower || $0.upperBound + 1 == lower } ?? ranges.count
        var end = first
        while end < ranges.count, upper == .max || ranges[end].lowerBound <= upper + 1 {
            lower = min(lower, ranges[end].lowerBound)
            upper = max(upper, ranges[end].upperBound)
            end += 1
        }
        ranges.replaceSubrange(first..<end, with: [lower...upper])
    }

    /// The parts of `range` not in the set, lowest first.
    public func missing(in range: ClosedRange<UInt64>) -> [ClosedRange<UInt64>] {
        var result: [ClosedRange<UInt64>] = []
        var next = range.lowerBound
        for r in ranges where r.upperBound >= next && r.lowerBound <= range.upperBound {
            if r.lowerBound > next { result.append(next...(r.lowerBound - 1)) }
            guard r.upperBound < range.upperBound else { return result }
            next = r.upperBound + 1
        }
        result.append(next...range.upperBound)
        return result
    }

    public var count: UInt64 { ranges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound + 1) } }
    public var highest: UInt64? { ranges.last?.upperBound }

    /// The missing ranges below the highest seq received. With `fromFirstSeq` the stream is expected to
    /// start at seq 1 (a settlement ledger wants the whole epoch); without, only holes after the first seq seen.
    /// Seqs in `excluding` (stated lost by the gateway) are left out of the gaps.
    public func gaps(fromFirstSeq: Bool = true, excluding: SeqSet = SeqSet()) -> [ClosedRange<UInt64>] {
        var result: [ClosedRange<UInt64>] = []
        if fromFirstSeq, let first = ranges.first, first.lowerBound > 1 { result.append(1...(first.lowerBound - 1)) }
        for (a, b) in zip(ranges, ranges.dropFirst()) { result.append((a.upperBound + 1)...(b.lowerBound - 1)) }
        return excluding.ranges.isEmpty ? result : result.flatMap { excluding.missing(in: $0) }
    }

    /// Binary search: the index of the first range whose lower bound is greater than `seq`, or nil when none is.
    private func index(after seq: UInt64) -> Int? {
        var low = 0, high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].lowerBound > seq { high = mid } else { low = mid + 1 }
        }
        return low < ranges.count ? low : nil
    }
}
