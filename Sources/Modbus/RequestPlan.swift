import Foundation
import MeterCore

/// One read request of a plan: a contiguous run of registers in one space, and the fields it carries.
public struct PlannedRequest: Sendable, Hashable, CustomStringConvertible {
    public var space: RegisterField.Space
    public var address: Int
    public var count: Int
    public var fields: [RegisterField]

    public var registers: Range<Int> { address..<(address + count) }
    public var functionCode: Int { space.functionCode }

    public var description: String {
        let names = fields.map(\.quantity.rawValue).joined(separator: ", ")
        return String(format: "FC%02d @%d (0x%04X) ×%d", functionCode, address, address, count) + "  \(names)"
    }
}

/// The requests that read a profile's values: registers coalesced into as few reads as the meter allows.
///
/// Rules: a request stays in one register space (one function code), covers at most the profile's
/// `max_registers` (never more than 125), and bridges a run of unused registers only up to `max_gap`.
/// A field is never split, and a SunSpec scale factor rides in the same request as its value.
public struct RequestPlan: Sendable, Hashable {
    public var requests: [PlannedRequest]

    public init(requests: [PlannedRequest]) { self.requests = requests }

    /// Plans the reads for `quantities` (all of the profile's values when nil).
    public init(profile: MeterProfile, quantities: Set<Quantity>? = nil) {
        let limit = min(profile.maxRegistersPerRequest, 125)
        let wanted = profile.fields.filter { quantities?.contains($0.quantity) ?? true }
        var requests: [PlannedRequest] = []
        for space in RegisterField.Space.allCases {
            let fields = wanted.filter { $0.space == space }.sorted { ($0.span.lowerBound, $0.span.upperBound) < ($1.span.lowerBound, $1.span.upperBound) }
            var current: (start: Int, end: Int, fields: [RegisterField])?
            for field in fields {
                let span = field.span
                if let c = current, span.lowerBound - c.end <= profile.maxGap, max(c.end, span.upperBound) - c.start <= limit {
                    current = (c.start, max(c.end, span.upperBound), c.fields + [field])
                } else {
                    if let c = current { requests.append(PlannedRequest(space: space, address: c.start, count: c.end - c.start, fields: c.fields)) }
                    current = (span.lowerBound, span.upperBound, [field])
                }
            }
            if let c = current { requests.append(PlannedRequest(space: space, address: c.start, count: c.end - c.start, fields: c.fields)) }
        }
        self.requests = requests
    }

    /// The naive plan: one request per value (what mbmd does for RTU meters), for comparison.
    public static func onePerValue(profile: MeterProfile, quantities: Set<Quantity>? = nil) -> RequestPlan {
        RequestPlan(requests: profile.fields.filter { quantities?.contains($0.quantity) ?? true }.map {
            PlannedRequest(space: $0.space, address: $0.span.lowerBound, count: $0.span.count, fields: [$0])
        })
    }

    /// Registers read per cycle, gaps included.
    public var registerCount: Int { requests.reduce(0) { $0 + $1.count } }
}
