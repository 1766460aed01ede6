import ConfigFile
import Foundation
import Testing
@testable import Ledger

/// UTC milliseconds of an ISO 8601 time.
func millis(_ iso: String) -> Int64 {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    return Int64(f.date(from: iso)!.timeIntervalSince1970 * 1000)
}

@Suite(.timeLimit(.minutes(5))) struct PriceAndAmountTests {
    @Test func decimalPricesAreReadExactly() throws {
        #expect(try Price(decimal: "31.25", precision: 4).scaled == 312_500)
        #expect(try Price(decimal: "0.1", precision: 4).scaled == 1_000)
        #expect(try Price(decimal: "7", precision: 0).scaled == 7)
        #expect(try Price(decimal: "-2.5", precision: 2).scaled == -250)
        #expect(try Price(decimal: "31.25", precision: 4).description == "31.2500")
    }

    @Test(arguments: ["", "abc", "1.", ".5", "1.2.3", "1e3", "0x10", "1,5"])
    func malformedPricesAreRefused(_ text: String) {
        #expect(throws: Price.ParseError.self) { try Price(decimal: text, precision: 4) }
    }

    @Test func tooManyDecimalsAreRefusedWithTheReason() {
        do {
            _ = try Price(decimal: "1.23456", precision: 4)
            Issue.record("accepted 5 decimals at precision 4")
        } catch {
            #expect(error.description.contains("5 decimal places") && error.description.contains("precision is 4"))
        }
    }

    @Test func amountsAreExactAndDoNotDrift() throws {
        let price = try Price(decimal: "31.25", precision: 4)        // ct/kWh
        // 0.25 kWh per quarter hour: 7.8125 ct each, exactly.
        let one = try #require(Amount.of(250_000, at: price))
        #expect(one.formatted(fractionDigits: 4) == "7.8125")
        // A year of quarter hours at 1 mWh each: summing exact amounts equals pricing the total at once.
        let tiny = try #require(Amount.of(1, at: price))
        let sum = (0..<35_040).reduce(Int64(0)) { acc, _ in acc + tiny.exact }
        #expect(sum == Amount.of(35_040, at: price)!.exact)
        #expect(Amount(exact: sum, scale: tiny.scale).formatted(fractionDigits: 4) == "1.0950")   // 35.04 Wh × 31.25 ct/kWh
    }

    @Test func roundingIsHalfAwayFromZero() {
        #expect(Amount(exact: 15, scale: 1).formatted(fractionDigits: 0) == "2")
        #expect(Amount(exact: 14, scale: 1).formatted(fractionDigits: 0) == "1")
        #expect(Amount(exact: -15, scale: 1).formatted(fractionDigits: 0) == "-2")
        #expect(Amount(exact: 5, scale: 2).formatted(fractionDigits: 1) == "0.1")
        #expect(Amount(exact: 4, scale: 2).formatted(fractionDigits: 1) == "0.0")
        #expect(Amount(exact: -4, scale: 2).formatted(fractionDigits: 1) == "0.0")
        #expect(Amount(exact: 123_456, scale: 3).formatted(fractionDigits: 6) == "123.456")
    }

    @Test func overflowIsReportedNotWrapped() {
        #expect(Amount.of(Int64.max / 2, at: Price(scaled: 3, precision: 0)) == nil)
    }
}

@Suite(.timeLimit(.minutes(5))) struct TariffTests {
    static let berlinTOU = """
        currency: EUR
        precision: 4
        time_of_use:
          time_zone: Europe/Berlin
          default: 20
          periods:
            - { days: [sun], from: 2, to: 3, price: 5 }
            - { days: [mon, tue, wed, thu, fri, sat, sun], from: 7, to: 20, price: 40.5 }
        """

    func berlin() throws -> Tariff { try TariffFile.parse(Self.berlinTOU, file: "berlin.yaml") }

    @Test func flatTariffPricesEveryIntervalAlike() throws {
        let t = try TariffFile.parse("currency: EUR\nprecision: 4\nflat: 31.25\n", file: "flat.yaml")
        #expect(t.name == "flat" && t.currency == "EUR")
        #expect(t.price(atMillis: millis("2026-03-29T01:00:00Z")).scaled == 312_500)
        #expect(t.price(atMillis: millis("2026-07-01T12:00:00Z")).scaled == 312_500)
    }

    @Test func peakStartsAtLocalSevenOnBothSidesOfTheSpringChange() throws {
        let t = try berlin()
        let peak: Int64 = 405_000, base: Int64 = 200_000
        // Saturday 28 March 2026, CET (UTC+1): local 07:00 is 06:00Z, local 20:00 is 19:00Z.
        #expect(t.price(atMillis: millis("2026-03-28T05:45:00Z")).scaled == base)
        #expect(t.price(atMillis: millis("2026-03-28T06:00:00Z")).scaled == peak)
        #expect(t.price(atMillis: millis("2026-03-28T18:45:00Z")).scaled == peak)
        #expect(t.price(atMillis: millis("2026-03-28T19:00:00Z")).scaled == base)
        // Sunday 29 March 2026, CEST (UTC+2) from 01:00Z: local 07:00 is 05:00Z, local 20:00 is 18:00Z.
        #expect(t.price(atMillis: millis("2026-03-29T04:45:00Z")).scaled == base)
        #expect(t.price(atMillis: millis("2026-03-29T05:00:00Z")).scaled == peak)
        #expect(t.price(atMillis: millis("2026-03-29T17:45:00Z")).scaled == peak)
        #expect(t.price(atMillis: millis("2026-03-29T18:00:00Z")).scaled == base)
        // Local 02:00-03:00 does not exist that Sunday: the 5 ct hour never applies.
        let day = Array(stride(from: millis("2026-03-28T23:00:00Z"), to: millis("2026-03-29T22:00:00Z"), by: 900_000))
        #expect(day.count == 23 * 4)
        #expect(day.filter { t.price(atMillis: $0).scaled == 50_000 }.isEmpty)
    }

    @Test func theRepeatedHourOfTheAutumnChangeIsPricedTwice() throws {
        let t = try berlin()
        // Sunday 25 October 2026: 03:00 CEST becomes 02:00 CET at 01:00Z, so local 02:xx runs 00:00Z-02:00Z.
        let day = Array(stride(from: millis("2026-10-24T22:00:00Z"), to: millis("2026-10-25T23:00:00Z"), by: 900_000))
        #expect(day.count == 25 * 4)
        let cheap = day.filter { t.price(atMillis: $0).scaled == 50_000 }
        #expect(cheap == Array(stride(from: millis("2026-10-25T00:00:00Z"), to: millis("2026-10-25T02:00:00Z"), by: 900_000)))
        // 0.25 kWh every quarter hour of the 25-hour day: 8 × 5 ct + 52 × 40.5 ct + 40 × 20 ct, times 0.25, exact.
        let total = day.reduce(Int64(0)) { $0 + t.amount(milliwattHours: 250_000, startMillis: $1)!.amount.exact }
        #expect(Amount(exact: total, scale: 10).formatted(fractionDigits: 4) == "736.5000")
        #expect(day.filter { t.price(atMillis: $0).scaled == 405_000 }.count == 52)
    }

    @Test func weekdayRulesFollowTheLocalDay() throws {
        let t = try TariffFile.parse("""
            currency: EUR
            precision: 2
            time_of_use:
              time_zone: America/New_York
              default: 10
              periods: [{ days: [mon, tue, wed, thu, fri], from: 0, to: 24, price: 30 }]
            """, file: "ny.yaml")
        // Saturday 03:00Z is still Friday 23:00 in New York (EDT, UTC-4).
        #expect(t.price(atMillis: millis("2026-06-13T03:00:00Z")).scaled == 3_000)
        #expect(t.price(atMillis: millis("2026-06-13T04:00:00Z")).scaled == 1_000)
    }

    @Test(arguments: [
        ("currency: EUR\nprecision: 4\nflat: 31.25\nflta: 1\n", "flta", 4),
        ("currency: EUR\nprecision: 4\n", "missing the price", 1),
        ("currency: euro\nprecision: 4\nflat: 1\n", "ISO 4217", 1),
        ("currency: EUR\nprecision: 2\nflat: 1.234\n", "3 decimal places", 3),
        ("currency: EUR\nprecision: 2\ntime_of_use:\n  time_zone: Mars/Olympus\n  default: 1\n  periods: []\n", "Mars/Olympus", 4),
        ("currency: EUR\nprecision: 2\ntime_of_use:\n  time_zone: UTC\n  default: 1\n  periods:\n    - { days: [mon], from: 20, to: 7, price: 2 }\n", "after 'from'", 7),
        ("currency: EUR\nprecision: 2\ntime_of_use:\n  time_zone: UTC\n  default: 1\n  periods:\n    - { days: [monday], from: 1, to: 7, price: 2 }\n", "'monday'", 7),
    ])
    func badTariffFilesNameTheFileKeyAndLine(_ text: String, _ expected: String, _ line: Int) {
        do {
            _ = try TariffFile.parse(text, file: "t.yaml")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.file == "t.yaml")
            #expect(error.description.contains(expected), "\(error)")
            #expect(error.line == line, "\(error)")
        }
    }
}
