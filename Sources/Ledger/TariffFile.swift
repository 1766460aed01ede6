import ConfigFile
import Foundation

/// Reads a tariff from YAML. Every error names the file, the key path and the line.
///
/// ```yaml
/// currency: EUR
/// precision: 4            # decimals kept after the minor unit (cents): prices like 31.2500
/// flat: 31.25             # cents per kWh
/// ```
/// or
/// ```yaml
/// currency: EUR
/// precision: 4
/// time_of_use:
///   time_zone: Europe/Berlin
///   default: 24.10        # cents per kWh outside every period
///   periods:              # the first period that covers the local weekday and hour wins
///     - days: [mon, tue, wed, thu, fri]
///       from: 7           # local hour, inclusive
///       to: 20            # local hour, exclusive (24 = midnight)
///       price: 38.50
/// ```
/// Exported energy (a prosumer feeding the grid) earns the `feed_in` price, shaped like the import pricing:
/// `feed_in: { flat: 8.20 }` or `feed_in: { time_of_use: { … } }`; without it export earns nothing.
public enum TariffFile {
    public static func load(path: String) throws(ConfigError) -> Tariff {
        try read(try ConfigNode.load(path: path), name: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> Tariff {
        try read(try ConfigNode.parse(text, file: file), name: URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent)
    }

    static func read(_ root: ConfigNode, name: String) throws(ConfigError) -> Tariff {
        let map = try root.mapping()
        let currencyNode = try map.required("currency", expected: "an ISO 4217 code such as EUR")
        let currency = try currencyNode.string()
        guard currency.count == 3, currency.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
            throw currencyNode.error("expected an ISO 4217 code such as EUR, found '\(currency)'")
        }
        let precision = try map.required("precision", expected: "the decimals kept after the minor unit, 0 to 6").int(in: 0...6)
        let kind = try pricing(map, at: root, precision: precision)
        var feedIn: Tariff.Kind?
        if let node = map.optional("feed_in") {
            let feedInMap = try node.mapping()
            feedIn = try pricing(feedInMap, at: node, precision: precision)
            try feedInMap.finish()
        }
        try map.finish()
        return Tariff(name: name, currency: currency, precision: precision, kind: kind, feedIn: feedIn)
    }

    /// `flat: PRICE` or a `time_of_use` mapping, in `map` (the file, or its `feed_in` section).
    static func pricing(_ map: ConfigMapping, at node: ConfigNode, precision: Int) throws(ConfigError) -> Tariff.Kind {
        switch (map.optional("flat"), map.optional("time_of_use")) {
        case (let flat?, nil):
            return .flat(try price(flat, precision: precision))
        case (nil, let tou?):
            return try readTimeOfUse(tou, precision: precision)
        case (_?, _?):
            throw node.error("give either 'flat' or 'time_of_use', not both")
        case (nil, nil):
            throw node.error("missing the price: 'flat: PRICE' or a 'time_of_use' mapping")
        }
    }

    static func readTimeOfUse(_ node: ConfigNode, precision: Int) throws(ConfigError) -> Tariff.Kind {
        let map = try node.mapping()
        let zoneNode = try map.required("time_zone", expected: "an IANA time zone such as Europe/Berlin")
        let zoneName = try zoneNode.string()
        guard let zone = TimeZone(identifier: zoneName) else {
            throw zoneNode.error("'\(zoneName)' is not a time zone in the system's tz database (e.g. Europe/Berlin)")
        }
        let fallback = try price(try map.required("default", expected: "the price outside every period"), precision: precision)
        var periods: [TariffPeriod] = []
        for item in try map.required("periods", expected: "a list of {days, from, to, price}").list() {
            let p = try item.mapping()
            var days: Set<Weekday> = []
            for day in try p.required("days", expected: "a list of mon, tue, wed, thu, fri, sat, sun").list() {
                days.insert(try day.oneOf(Weekday.self))
            }
            let fromNode = try p.required("from", expected: "a local hour 0 to 23")
            let from = try fromNode.int(in: 0...23)
            let toNode = try p.required("to", expected: "a local hour 1 to 24")
            let to = try toNode.int(in: 1...24)
            guard from < to else { throw toNode.error("'to' (\(to)) must be after 'from' (\(from)); split a period that runs past midnight in two") }
            guard !days.isEmpty else { throw item.error("'days' is empty") }
            let value = try price(try p.required("price", expected: "a price per kWh"), precision: precision)
            try p.finish()
            periods.append(TariffPeriod(days: days, fromHour: from, toHour: to, price: value))
        }
        try map.finish()
        return .timeOfUse(timeZone: zone, periods: periods, default: fallback)
    }

    static func price(_ node: ConfigNode, precision: Int) throws(ConfigError) -> Price {
        do { return try Price(decimal: try node.string(), precision: precision) } catch let error as Price.ParseError {
            throw node.error(error.description)
        } catch let error as ConfigError {
            throw error
        } catch {
            throw node.error("\(error)")
        }
    }
}
