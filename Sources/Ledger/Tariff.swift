import Foundation

/// A price per kWh in integer units, so money never drifts: `scaled` counts 10^-`precision` of the
/// currency's minor unit (precision 4, cents: 31.25 ct/kWh is 312_500).
public struct Price: Sendable, Hashable, CustomStringConvertible {
    public let scaled: Int64
    public let precision: Int

    public init(scaled: Int64, precision: Int) {
        self.scaled = scaled
        self.precision = precision
    }

    /// Why a price text was not accepted.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Reads a decimal such as `31.25` exactly (no binary floating point on the way).
    public init(decimal text: String, precision: Int) throws(ParseError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let negative = trimmed.hasPrefix("-")
        let body = negative ? String(trimmed.dropFirst()) : trimmed
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), !parts[0].isEmpty, parts.allSatisfy({ $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              parts.count == 1 || !parts[1].isEmpty else {
            throw ParseError(description: "'\(text)' is not a decimal price such as 31.25")
        }
        let fraction = parts.count == 2 ? String(parts[1]) : ""
        guard fraction.count <= precision else {
            throw ParseError(description: "'\(text)' has \(fraction.count) decimal places; the tariff's precision is \(precision)")
        }
        let digits = String(parts[0]) + fraction + String(repeating: "0", count: precision - fraction.count)
        guard let value = Int64(digits), value <= Price.maximumScaled else {
            throw ParseError(description: "'\(text)' is too large for a price")
        }
        self.init(scaled: negative ? -value : value, precision: precision)
    }

    /// Keeps `mWh × scaled` far from Int64's limit: one interval of 1 GWh at this price still fits.
    static let maximumScaled: Int64 = 1_000_000_000

    public var description: String { Amount(exact: scaled, scale: precision).formatted(fractionDigits: precision) }
}

/// An exact amount of money: `exact` counts 10^-`scale` of the currency's minor unit.
public struct Amount: Sendable, Hashable {
    public var exact: Int64
    public var scale: Int

    public init(exact: Int64, scale: Int) {
        self.exact = exact
        self.scale = scale
    }

    /// Energy times price, exact: mWh × (10^-precision minor units per kWh) = 10^-(precision+6) minor units.
    /// Nil when the product does not fit in 64 bits.
    public static func of(_ milliwattHours: Int64, at price: Price) -> Amount? {
        let (product, overflow) = milliwattHours.multipliedReportingOverflow(by: price.scaled)
        return overflow ? nil : Amount(exact: product, scale: price.precision + 6)
    }

    /// The amount in minor units with `fractionDigits` decimals, rounded half away from zero.
    public func formatted(fractionDigits: Int) -> String {
        let drop = max(0, scale - fractionDigits)
        var divisor: Int64 = 1
        for _ in 0..<drop { divisor *= 10 }
        let magnitude = exact.magnitude
        var kept = magnitude / divisor.magnitude
        if drop > 0, (magnitude % divisor.magnitude) * 2 >= divisor.magnitude { kept += 1 }
        let digits = min(fractionDigits, scale)
        var text = String(kept)
        if digits > 0 {
            if text.count <= digits { text = String(repeating: "0", count: digits - text.count + 1) + text }
            text.insert(".", at: text.index(text.endIndex, offsetBy: -digits))
        }
        return (exact < 0 && kept > 0 ? "-" : "") + text
    }
}

/// The days of the week as tariff files name them.
public enum Weekday: String, Sendable, Hashable, CaseIterable {
    case mon, tue, wed, thu, fri, sat, sun

    /// From Foundation's Gregorian weekday number (1 = Sunday).
    init(gregorian: Int) {
        self = [.sun, .mon, .tue, .wed, .thu, .fri, .sat][(gregorian - 1) % 7]
    }
}

/// One time-of-use period: a price on some weekdays from one local hour (inclusive) to another (exclusive).
public struct TariffPeriod: Sendable, Hashable {
    public var days: Set<Weekday>
    public var fromHour: Int
    public var toHour: Int
    public var price: Price

    public init(days: Set<Weekday>, fromHour: Int, toHour: Int, price: Price) {
        self.days = days
        self.fromHour = fromHour
        self.toHour = toHour
        self.price = price
    }

    func covers(day: Weekday, hour: Int) -> Bool { days.contains(day) && hour >= fromHour && hour < toHour }
}

/// What a kWh costs: one flat price, or prices by local weekday and hour in a stated time zone.
///
/// An interval is priced by the local time at its start (settlement intervals are aligned to 15 or 60
/// minutes, so they never straddle an hour boundary). Local time follows the zone's DST rules: on the
/// day clocks go forward the skipped hour never occurs; on the day they go back the repeated hour is
/// priced as that hour both times.
public struct Tariff: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case flat(Price)
        /// The first period that covers the local weekday and hour wins; otherwise `default`.
        case timeOfUse(timeZone: TimeZone, periods: [TariffPeriod], default: Price)
    }

    /// A short name for the ledger rows (the file name, or `flat`).
    public var name: String
    /// ISO 4217 code, for the export.
    public var currency: String
    /// Digits kept after the minor unit's point in prices and exported amounts.
    public var precision: Int
    public var kind: Kind
    /// What exported energy (fed into the grid) earns per kWh, priced like `kind`; nil: export earns nothing.
    public var feedIn: Kind?

    public init(name: String, currency: String, precision: Int, kind: Kind, feedIn: Kind? = nil) {
        self.name = name
        self.currency = currency
        self.precision = precision
        self.kind = kind
        self.feedIn = feedIn
    }

    /// No tariff: every interval costs nothing (the ledger still keeps kWh).
    public static let none = Tariff(name: "none", currency: "", precision: 0, kind: .flat(Price(scaled: 0, precision: 0)))

    /// The price of an interval that starts at `startMillis` (UTC milliseconds).
    public func price(atMillis startMillis: Int64) -> Price { kind.price(atMillis: startMillis) }

    /// The feed-in price of an interval that starts at `startMillis` (0 without a `feed_in` section).
    public func feedInPrice(atMillis startMillis: Int64) -> Price {
        feedIn?.price(atMillis: startMillis) ?? Price(scaled: 0, precision: precision)
    }

    /// The exact amount for `milliwattHours` in the interval starting at `startMillis`; nil on overflow.
    public func amount(milliwattHours: Int64, startMillis: Int64) -> (price: Price, amount: Amount)? {
        let price = price(atMillis: startMillis)
        return Amount.of(milliwattHours, at: price).map { (price, $0) }
    }

    /// What `milliwattHours` exported in the interval starting at `startMillis` earns; nil on overflow.
    public func feedInAmount(milliwattHours: Int64, startMillis: Int64) -> (price: Price, amount: Amount)? {
        let price = feedInPrice(atMillis: startMillis)
        return Amount.of(milliwattHours, at: price).map { (price, $0) }
    }
}

extension Tariff.Kind {
    /// The price of an interval that starts at `startMillis` (UTC milliseconds).
    public func price(atMillis startMillis: Int64) -> Price {
        switch self {
        case .flat(let price):
            return price
        case .timeOfUse(let zone, let periods, let fallback):
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = zone
            let date = Date(timeIntervalSince1970: Double(startMillis) / 1000)
            let parts = calendar.dateComponents([.weekday, .hour], from: date)
            let day = Weekday(gregorian: parts.weekday ?? 1)
            let hour = parts.hour ?? 0
            return periods.first { $0.covers(day: day, hour: hour) }?.price ?? fallback
        }
    }

}
