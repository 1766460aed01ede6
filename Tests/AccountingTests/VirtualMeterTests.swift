import Accounting
import MeterCore
import Testing

@Suite(.timeLimit(.minutes(5))) struct VirtualMeterTests {
    func result(_ meter: String, start: Int64 = 0, imported: Int64, exported: Int64 = 0, quality: Quality = .measured,
                peak: Double = 0) -> IntervalResult {
        IntervalResult(meter: meterID(meter), source: .gpu, startMillis: start, endMillis: start + 900_000,
                       importTotal: MilliwattHours(imported), exportTotal: MilliwattHours(exported),
                       importDelta: MilliwattHours(imported), exportDelta: MilliwattHours(exported),
                       averagePowerWatts: 0, peakPowerWatts: peak, sampleCount: 15, quality: quality)
    }

    @Test func aRackIsTheSumOfItsGPUsWithTheWorstQuality() throws {
        var rack = try VirtualMeter(meter: meterID("rack"), terms: [.init(.plus, meterID("gpu0")), .init(.plus, meterID("gpu1"))])
        let first = try rack.combine([result("gpu0", imported: 100_000, peak: 500), result("gpu1", imported: 50_000, quality: .estimated, peak: 300)])
        #expect(first.importDelta == 150_000 && first.exportDelta == .zero)
        #expect(first.quality == .estimated)
        #expect(first.averagePowerWatts == 600)
        #expect(first.peakPowerWatts == 800)
        #expect(first.source == .virtual && first.meter == meterID("rack"))
        let second = try rack.combine([result("gpu0", start: 900_000, imported: 10_000)])
        #expect(second.quality == .gap) // gpu1 missing
        #expect(second.importTotal == 160_000)
        let third = try rack.combine([], startMillis: 1_800_000, endMillis: 2_700_000) // every GPU down
        #expect(third.quality == .gap && third.importDelta == .zero && third.importTotal == 160_000)
    }

    @Test func netIsImportMinusExport() throws {
        var net = try VirtualMeter(meter: meterID("net"), terms: [
            .init(.plus, meterID("grid"), channel: .importOnly), .init(.minus, meterID("grid"), channel: .exportOnly),
        ])
        let a = try net.combine([result("grid", imported: 30_000, exported: 70_000)])
        #expect(a.importDelta == .zero && a.exportDelta == 40_000)
        let b = try net.combine([result("grid", start: 900_000, imported: 90_000, exported: 10_000)])
        #expect(b.importDelta == 80_000 && b.exportTotal == 40_000 && b.importTotal == 80_000)
    }

    @Test func resultsThatDoNotFitAreRefused() throws {
        var rack = try VirtualMeter(meter: meterID("rack"), terms: [.init(.plus, meterID("gpu0")), .init(.plus, meterID("gpu1"))])
        #expect(throws: AccountingError.self) { try rack.combine([result("gpu0", imported: 1), result("gpu1", start: 900_000, imported: 1)]) }
        #expect(throws: AccountingError.self) { try rack.combine([result("gpu7", imported: 1)]) }
        #expect(throws: AccountingError.self) { try rack.combine([result("gpu0", imported: 1), result("gpu0", imported: 1)]) }
        #expect(throws: AccountingError.self) { try VirtualMeter(meter: meterID("rack"), terms: [.init(.plus, meterID("rack"))]) }
        _ = try rack.combine([result("gpu0", start: 900_000, imported: 1)])
        #expect(throws: AccountingError.self) { try rack.combine([result("gpu0", start: 0, imported: 1)]) }
    }
}
