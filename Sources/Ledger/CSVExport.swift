import Foundation

/// The ledger as CSV (RFC 4180): one row per meter and interval.
///
/// Columns: `gateway, meter, epoch, seq, interval_start_utc, interval_end_utc, kwh, export_kwh, quality,
/// tariff, currency, price_per_kwh, amount, feed_in_price_per_kwh, export_amount, pricing_error`. Energy is exact to the Wh's thousandth (mWh as a 6-decimal kWh);
/// `price_per_kwh` and `amount` are in the currency's minor unit (e.g. cents) with the tariff's precision,
/// the amount rounded half away from zero from the exact product; `export_amount` is what the exported energy
/// earns at the tariff's `feed_in` price (0 without one). A reading that could not be priced has empty amounts
/// and the reason in `pricing_error`. Text cells that a spreadsheet would run as a formula (starting with
/// `= + - @`, a tab or a carriage return) are prefixed with `'` (OWASP's CSV injection advice).
public enum LedgerCSV {
    public static let header = ["gateway", "meter", "epoch", "seq", "interval_start_utc", "interval_end_utc", "kwh", "export_kwh",
                                "quality", "tariff", "currency", "price_per_kwh", "amount", "feed_in_price_per_kwh", "export_amount",
                                "pricing_error"]

    /// The whole document, header first, lines ending in CRLF as RFC 4180 says.
    public static func document(_ rows: [LedgerRow]) -> String {
        let formatter = utcFormatter()
        var out = line(header)
        for row in rows { out += line(fields(row, formatter: formatter)) }
        return out
    }

    public static func fields(_ row: LedgerRow) -> [String] { fields(row, formatter: utcFormatter()) }

    static func fields(_ row: LedgerRow, formatter: ISO8601DateFormatter) -> [String] {
        func utc(_ millis: Int64) -> String { formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000)) }
        return [text(row.gateway), text(row.meter), text(row.epoch), String(row.seq), utc(row.startMillis), utc(row.endMillis),
         Amount(exact: row.importMilliwattHours, scale: 6).formatted(fractionDigits: 6),
         Amount(exact: row.exportMilliwattHours, scale: 6).formatted(fractionDigits: 6),
         text(row.quality), text(row.tariff), text(row.currency), row.price.description,
         row.pricingError == nil ? row.amount.formatted(fractionDigits: row.price.precision) : "",
         row.exportPrice.description,
         row.pricingError == nil ? row.exportAmount.formatted(fractionDigits: row.price.precision) : "", text(row.pricingError ?? "")]
    }

    /// A text cell that cannot start a spreadsheet formula.
    static func text(_ cell: String) -> String {
        guard let first = cell.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) else { return cell }
        return "'" + cell
    }

    static func line(_ fields: [String]) -> String { fields.map(quote).joined(separator: ",") + "\r\n" }

    /// Quotes a field that holds a comma, a quote or a line break; doubles inner quotes.
    static func quote(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// `2026-03-29T01:00:00Z`: ISO 8601 in UTC, to the second (intervals are whole seconds).
    public static func utc(_ millis: Int64) -> String {
        utcFormatter().string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    /// One per export: creating a formatter is costly, and it is not Sendable, so it is not shared.
    static func utcFormatter() -> ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime]
        return formatter
    }

    /// Reads `2026-03-29T01:00:00Z`, `2026-03-29T03:00:00+02:00` or a date `2026-03-29` (midnight UTC).
    public static func parseTime(_ text: String) -> Int64? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
        formatter.formatOptions = [.withFullDate]
        formatter.timeZone = TimeZone(identifier: "UTC")
        if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
        return nil
    }
}
