import Foundation

/// How a simulated meter's power moves over time.
public enum LoadCurve: Sendable, Hashable {
    /// A constant power draw (W); negative values export.
    case constant(watts: Double)
    /// `base + amplitude × sin(2π t / period)`.
    case sine(baseWatts: Double, amplitudeWatts: Double, period: Duration)
    /// A recorded profile: power at given seconds, linearly interpolated, repeated after the last point.
    case recorded(RecordedLoad)

    /// Power at `seconds` since the simulation started.
    public func watts(at seconds: Double) -> Double {
        switch self {
        case .constant(let w): return w
        case .sine(let base, let amplitude, let period):
            return base + amplitude * sin(2 * Double.pi * seconds / max(period.seconds, 0.001))
        case .recorded(let r): return r.watts(at: seconds)
        }
    }
}

/// Power samples read from a CSV file: `seconds,watts` per line (a header line and `#` comments are skipped).
public struct RecordedLoad: Sendable, Hashable {
    public let points: [(seconds: Double, watts: Double)]

    public static func == (a: RecordedLoad, b: RecordedLoad) -> Bool {
        a.points.count == b.points.count && zip(a.points, b.points).allSatisfy { $0.seconds == $1.seconds && $0.watts == $1.watts }
    }
    public func hash(into h: inout Hasher) { for p in points { h.combine(p.seconds); h.combine(p.watts) } }

    /// Why a CSV load file was refused: the file, the line and what was wrong.
    public struct FormatError: Error, CustomStringConvertible {
        public let file: String
        public let line: Int
        public let message: String
        public var description: String { "\(file):\(line): \(message)" }
    }

    public init(points: [(seconds: Double, watts: Double)]) throws(FormatError) {
        guard points.count >= 2 else { throw FormatError(file: "-", line: 0, message: "a recorded load needs at least two points") }
        self.points = points
    }

    /// Reads `seconds,watts` lines; times must rise strictly.
    public init(csv text: String, file: String) throws(FormatError) {
        var points: [(Double, Double)] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let cells = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 2, let t = Double(cells[0]), let w = Double(cells[1]), t.isFinite, w.isFinite else {
                if points.isEmpty && i == 0 { continue }   // a header line
                throw FormatError(file: file, line: i + 1, message: "expected 'seconds,watts', found '\(line)'")
            }
            if let last = points.last, t <= last.0 {
                throw FormatError(file: file, line: i + 1, message: "time \(t) s does not come after \(last.0) s")
            }
            points.append((t, w))
        }
        guard points.count >= 2 else { throw FormatError(file: file, line: 0, message: "a recorded load needs at least two 'seconds,watts' lines") }
        self.points = points
    }

    public static func load(path: String) throws(FormatError) -> RecordedLoad {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(file: path, line: 0, message: "cannot read the file")
        }
        return try RecordedLoad(csv: String(decoding: data, as: UTF8.self), file: path)
    }

    func watts(at seconds: Double) -> Double {
        let first = points[0].seconds, span = points[points.count - 1].seconds - first
        var t = seconds + first
        if span > 0 { t = first + (seconds.truncatingRemainder(dividingBy: span) + span).truncatingRemainder(dividingBy: span) }
        var lo = 0, hi = points.count - 1
        while hi - lo > 1 { let mid = (lo + hi) / 2; if points[mid].seconds <= t { lo = mid } else { hi = mid } }
        let a = points[lo], b = points[hi]
        let f = b.seconds > a.seconds ? (t - a.seconds) / (b.seconds - a.seconds) : 0
        return a.watts + (b.watts - a.watts) * min(max(f, 0), 1)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
