import MeterCore

/// Settlement intervals aligned to wall-clock UTC boundaries: with a 15-minute period, intervals start at
/// :00, :15, :30 and :45 of every hour, whatever time the gateway started.
public struct IntervalGrid: Sendable, Hashable {
    /// The interval length in milliseconds (1 s … 1 h).
    public let periodMillis: Int64

    public static let allowedPeriods: ClosedRange<Int64> = 1_000...3_600_000

    public enum Problem: Error, Hashable, Sendable, CustomStringConvertible {
        case outOfRange(Int64)
        case notDividingAnHour(Int64)
        public var description: String {
            switch self {
            case .outOfRange(let ms): return "interval of \(ms) ms is outside 1s…1h"
            case .notDividingAnHour(let ms): return "interval of \(ms) ms does not divide an hour evenly, so intervals would drift off the clock boundaries"
            }
        }
    }

    /// A grid with the given period, which must divide an hour (so every hour starts an interval).
    public init(periodMillis: Int64) throws(Problem) {
        guard Self.allowedPeriods.contains(periodMillis) else { throw .outOfRange(periodMillis) }
        guard 3_600_000 % periodMillis == 0 else { throw .notDividingAnHour(periodMillis) }
        self.periodMillis = periodMillis
    }

    /// The start of the interval containing `wallMillis` (floor, also for times before 1970).
    public func start(containing wallMillis: Int64) -> Int64 {
        let r = wallMillis % periodMillis
        return r >= 0 ? wallMillis - r : wallMillis - r - periodMillis
    }

    /// The end (exclusive) of the interval containing `wallMillis`.
    public func end(containing wallMillis: Int64) -> Int64 { start(containing: wallMillis) + periodMillis }

    /// The interval starts in `[from, to)`.
    public func boundaries(from: Int64, to: Int64) -> StrideTo<Int64> {
        let first = start(containing: from) == from ? from : end(containing: from)
        return stride(from: first, to: to, by: Int(periodMillis))
    }
}
