import Accounting
import Foundation
import MeterCore
import PowerRails
import TestSupport
import Testing

let fixtures = "\(repositoryRoot)/Tests/PowerRailsTests/Fixtures"

/// A writable copy of a recorded tree (symbolic links kept), for tests that change it.
func copyOfFixture(_ name: String) throws -> TemporaryDirectory {
    let dir = TemporaryDirectory("metergate-rails")
    try FileManager.default.copyItem(atPath: "\(fixtures)/\(name)/sys", toPath: dir.file("sys"))
    return dir
}

@Suite(.timeLimit(.minutes(5))) struct SysfsRailsTests {
    @Test func jetsonOrinRailsAreNamedByLabelAndComputedFromVoltageTimesCurrent() throws {
        let tree = SysfsTree(root: "\(fixtures)/jetson-agx-orin")
        let rails = SysfsRails.discover(in: tree)
        #expect(rails.map(\.id) == [
            "hwmon:ina3221@1-0040:VDD_CPU_CV", "hwmon:ina3221@1-0040:VDD_GPU_SOC", "hwmon:ina3221@1-0040:VIN_SYS_5V0",
            "hwmon:ina3221@1-0041:VDDQ_VDD2_1V8AO",
        ])
        let gpu = try #require(rails.first { $0.label == "VDD_GPU_SOC" })
        #expect(try SysfsRails.read(gpu, in: tree) == .power(microwatts: 5048 * 624))
        #expect(!gpu.isEnergyCounter)
        #expect(gpu.notes.contains { $0.contains("no VDD_IN") })
        #expect(rails.allSatisfy { $0.family == .ina3221 })
    }

    @Test func orinNXHasAModuleInputRailAndNoPartialNote() throws {
        let tree = SysfsTree(root: "\(fixtures)/jetson-orin-nx")
        let rails = SysfsRails.discover(in: tree)
        #expect(rails.map(\.label) == ["VDD_CPU_GPU_CV", "VDD_IN", "VDD_SOC"])
        #expect(rails.allSatisfy { $0.notes.isEmpty })
        let input = try #require(rails.first { $0.label == "VDD_IN" })
        #expect(try SysfsRails.read(input, in: tree) == .power(microwatts: 5064 * 1424))
    }

    @Test func olderJetsonsAreReadThroughTheIna3221xIIODriver() throws {
        let tree = SysfsTree(root: "\(fixtures)/jetson-xavier-l4t32")
        let rails = SysfsRails.discover(in: tree)
        #expect(rails.map(\.id) == [
            "iio:ina3221x@1-0040:CPU", "iio:ina3221x@1-0040:GPU", "iio:ina3221x@1-0040:SOC",
            "iio:ina3221x@1-0041:CV", "iio:ina3221x@1-0041:SYS5V", "iio:ina3221x@1-0041:VDDRQ",
        ])
        let gpu = try #require(rails.first { $0.label == "GPU" })
        #expect(try SysfsRails.read(gpu, in: tree) == .power(microwatts: 1_531_000)) // the IIO driver reports mW
        #expect(gpu.family == .ina3221)
    }

    @Test func hwmonNumbersDoNotChangeWhichRailIsWhich() throws {
        let dir = try copyOfFixture("jetson-agx-orin")
        defer { dir.cleanup() }
        let before = SysfsRails.discover(in: SysfsTree(root: dir.path))
        // After a reboot the chips probe in another order and get other numbers.
        let fm = FileManager.default
        try fm.moveItem(atPath: dir.file("sys/class/hwmon/hwmon1"), toPath: dir.file("sys/class/hwmon/hwmon9"))
        try fm.moveItem(atPath: dir.file("sys/class/hwmon/hwmon2"), toPath: dir.file("sys/class/hwmon/hwmon1"))
        let tree = SysfsTree(root: dir.path)
        let after = SysfsRails.discover(in: tree)
        #expect(after.map(\.id) == before.map(\.id))
        let gpu = try #require(after.first { $0.id == "hwmon:ina3221@1-0040:VDD_GPU_SOC" })
        #expect(try SysfsRails.read(gpu, in: tree) == .power(microwatts: 3_149_952))
    }

    @Test func amdgpuAveragePowerIsARailWithItsCaveat() throws {
        let tree = SysfsTree(root: "\(fixtures)/amd-gpu")
        let rails = SysfsRails.discover(in: tree).filter { $0.chip == "amdgpu" }
        #expect(rails.map(\.id) == ["hwmon:amdgpu@0000:03:00.0:PPT"])
        #expect(try SysfsRails.read(rails[0], in: tree).powerWatts == 35)
        #expect(rails[0].notes.contains { $0.contains("APU") })
        // k10temp and nvme have no power or energy channels.
        #expect(Set(SysfsRails.discover(in: tree).map(\.chip)) == ["amdgpu", "amd_energy"])
    }

    @Test func hwmonEnergyChannelsAreCountersInMicrojoules() throws {
        let tree = SysfsTree(root: "\(fixtures)/amd-gpu")
        let rails = SysfsRails.discover(in: tree).filter { $0.chip == "amd_energy" }
        #expect(rails.map(\.id) == ["hwmon:amd_energy@amd_energy.0:Ecore000", "hwmon:amd_energy@amd_energy.0:Ecore001",
                                     "hwmon:amd_energy@amd_energy.0:Esocket0"])
        #expect(rails.allSatisfy { $0.isEnergyCounter && $0.family == .hwmon })
        let socket = try #require(rails.last)
        #expect(try SysfsRails.read(socket, in: tree) == .energy(microjoules: 98_212_337_461))
    }

    @Test func ina226PowerIsReadInMicrowatts() throws {
        let tree = SysfsTree(root: "\(fixtures)/ina226")
        let rails = SysfsRails.discover(in: tree)
        #expect(rails.map(\.id) == ["hwmon:ina226@1-0040:power1_input"])
        #expect(try SysfsRails.read(rails[0], in: tree) == .power(microwatts: 14_175_000))
        #expect(InventoryMatch.one(in: rails, chip: "ina226", label: "power1_input")?.device == "1-0040")
    }

    @Test func raplZonesAreEnergyCountersThatWrap() throws {
        let tree = SysfsTree(root: "\(fixtures)/rapl")
        let rails = SysfsRails.discover(in: tree)
        #expect(rails.map(\.id) == ["rapl:intel-rapl-mmio:0", "rapl:intel-rapl:0", "rapl:intel-rapl:0:0", "rapl:intel-rapl:0:1", "rapl:intel-rapl:1"])
        let package = try #require(rails.first { $0.id == "rapl:intel-rapl:0" })
        #expect(package.method == .raplEnergy(path: "sys/class/powercap/intel-rapl:0/energy_uj", wrapsAtMicrojoules: 262_143_328_850))
        #expect(package.isEnergyCounter && package.label == "package-0")
        #expect(package.family == .rapl)
        #expect(rails.first { $0.id == "rapl:intel-rapl:0:1" }?.notes.contains { $0.contains("part of intel-rapl:0 (package-0)") } == true)
        #expect(rails.first { $0.id == "rapl:intel-rapl-mmio:0" }?.notes.contains { $0.contains("MMIO") } == true)
    }

    @Test func aRaplWrapIsAccountedAsARolloverNotAReset() throws {
        let dir = try copyOfFixture("rapl")
        defer { dir.cleanup() }
        let tree = SysfsTree(root: dir.path)
        let package = try #require(SysfsRails.discover(in: tree).first { $0.id == "rapl:intel-rapl:0" })
        guard case .raplEnergy(_, let range?) = package.method else { Issue.record("no range"); return }
        var accountant = CounterAccountant(configuration: .init(
            settings: SourceSettings(meter: try MeterID(validating: "cpu0"), source: .rapl, grid: try IntervalGrid(periodMillis: 60_000)),
            scale: .microjoules, range: .modulus(range), ratedPowerWatts: 400, afterReset: .countFromZero))
        func energy() throws -> UInt64 {
            guard case .energy(let microjoules) = try SysfsRails.read(package, in: tree) else { throw RailError(path: "", reason: .notAnInteger("")) }
            return microjoules
        }
        let t0 = Timestamp(wallNanos: 1_767_225_600_000_000_000, monotonicNanos: 1_000_000_000_000)
        _ = try accountant.add(.init(time: t0, importCount: try energy()))
        dir.write("sys/class/powercap/intel-rapl:0/energy_uj", "1000000\n") // wrapped 30 s later
        let t1 = Timestamp(wallNanos: t0.wallNanos + 60_000_000_000, monotonicNanos: t0.monotonicNanos + 60_000_000_000)
        let closed = try accountant.add(.init(time: t1, importCount: try energy()))
        let wrapped: UInt64 = (262_143_328_850 - 262_143_000_000) + 1_000_000
        #expect(closed.first?.events.contains(.rollover(counts: wrapped)) == true)
        // 1 328 850 µJ = 0.369 mWh: below one mWh, so it is carried, not lost.
        #expect(accountant.totals?.imported == CounterScale.microjoules.energy(ofCount: 262_143_000_000 + UInt128(wrapped)))
    }

    @Test func unreadableRailsSayWhy() throws {
        let dir = try copyOfFixture("ina226")
        defer { dir.cleanup() }
        let tree = SysfsTree(root: dir.path)
        let rail = try #require(SysfsRails.discover(in: tree).first)
        dir.write("sys/class/hwmon/hwmon2/power1_input", "n/a\n")
        let garbage = #expect(throws: RailError.self) { try SysfsRails.read(rail, in: tree) }
        #expect(garbage?.description.contains("holds 'n/a', not an integer") == true)
        try FileManager.default.removeItem(atPath: dir.file("sys/class/hwmon/hwmon2/power1_input"))
        let missing = #expect(throws: RailError.self) { try SysfsRails.read(rail, in: tree) }
        #expect(missing?.reason == .system(call: "open", errno: ENOENT))
        #expect(missing?.description.contains("power1_input") == true)
    }

    /// Root reads a mode-000 file, and the README runs the suite as root: then the same tree is read by the real
    /// binary as `nobody` (runuser), so the permission path runs either way.
    @Test func aRootOnlyRaplCounterGivesTheFix() throws {
        let dir = try copyOfFixture("rapl")
        defer { dir.cleanup() }
        chmod(dir.file("sys/class/powercap/intel-rapl:0/energy_uj"), 0o000)
        if getuid() == 0 {
            let runuser = try #require(which("runuser"), "runuser is missing (util-linux)")
            // nobody must reach the copy: every directory on the way open to others, the counter still mode 000.
            var path = dir.path
            while path != "/" && !path.isEmpty {
                chmod(path, 0o755)
                path = (path as NSString).deletingLastPathComponent
                if path == "/tmp" { break }
            }
            let enumerator = FileManager.default.enumerator(atPath: dir.path)
            while let item = enumerator?.nextObject() as? String {
                if item.hasSuffix("intel-rapl:0/energy_uj") { continue }
                var isDirectory: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: dir.file(item), isDirectory: &isDirectory)
                chmod(dir.file(item), isDirectory.boolValue ? 0o755 : 0o644)
            }
            let r = try runProcess(runuser, ["-u", "nobody", "--", try metergateBinary(), "scan", "--rails", "--sysfs-root", dir.path])
            #expect(r.stdout.contains("rapl:intel-rapl:0"), "\(r.stdout)\(r.stderr)")
            #expect((r.stdout + r.stderr).contains("not readable"), "\(r.stdout)\(r.stderr)")
            #expect((r.stdout + r.stderr).contains("udev"), "\(r.stdout)\(r.stderr)")
            return
        }
        let tree = SysfsTree(root: dir.path)
        let package = try #require(SysfsRails.discover(in: tree).first { $0.id == "rapl:intel-rapl:0" })
        #expect(package.notes.contains { $0.contains("not readable") })
        let error = #expect(throws: RailError.self) { try SysfsRails.read(package, in: tree) }
        #expect(error?.description.contains("udev") == true)
    }

    @Test func theInventoryRendersRailsValuesAndNotes() throws {
        let inventory = RailInventory.discover(root: "\(fixtures)/jetson-agx-orin", nvmlLibraryPath: "/nonexistent/libnvidia-ml.so.1")
        let text = inventory.render()
        #expect(text.contains("hwmon:ina3221@1-0040:VDD_GPU_SOC"))
        #expect(text.contains("3.150 W"))
        #expect(text.contains("NVML: cannot load /nonexistent/libnvidia-ml.so.1"))
        #expect(text.contains("note: hwmon:ina3221@1-0040:VDD_GPU_SOC: Jetson AGX Orin has no VDD_IN rail"))
        #expect(inventory.rails(chip: "ina3221", label: "VDD_CPU_CV").count == 1)
        let empty = TemporaryDirectory()
        defer { empty.cleanup() }
        #expect(RailInventory.discover(root: empty.path, nvmlLibraryPath: nil).render().contains("no power or energy rails found"))
    }
}

enum InventoryMatch {
    static func one(in rails: [RailDescription], chip: String, label: String) -> RailDescription? {
        let matches = rails.filter { $0.chip == chip && $0.label == label }
        return matches.count == 1 ? matches[0] : nil
    }
}

@Suite(.timeLimit(.minutes(5))) struct RailToIntervalTests {
    @Test func anIna226RailReadByTheSamplerIntegratesIntoIntervals() async throws {
        let dir = try copyOfFixture("ina226")
        defer { dir.cleanup() }
        let inventory = RailInventory.discover(root: dir.path, nvmlLibraryPath: nil)
        let rail = try #require(inventory.rails(chip: "ina226", label: "power1_input").first)
        let sampler = RailSampler(tree: inventory.tree, nvml: nil)
        var accountant = PowerAccountant(settings: SourceSettings(
            meter: try MeterID(validating: "pi-rail"), source: rail.source, grid: try IntervalGrid(periodMillis: 60_000)))
        var closed: [AccountedInterval] = []
        // Twelve polls five seconds apart; the chip's reading changes from 14.175 W to 10 W half way.
        for i in 0...12 {
            if i == 6 { dir.write("sys/class/hwmon/hwmon2/power1_input", "10000000\n") }
            let watts = try #require(try await sampler.read(rail).powerWatts)
            let t = Timestamp(wallNanos: 1_767_225_600_000_000_000 + Int64(i) * 5_000_000_000, monotonicNanos: 77_000_000_000 + UInt64(i) * 5_000_000_000)
            closed += try accountant.add(.init(time: t, powerWatts: watts))
        }
        let result = try #require(closed.first?.result)
        // Trapezoids: 25 s at 14.175 W, one 5 s ramp down to 10 W, 30 s at 10 W: 714.8125 J = 198.56 mWh.
        #expect(result.importDelta == 198)
        #expect(result.sampleCount == 12)
        #expect(result.peakPowerWatts == 14.175)
        #expect(result.quality == .estimated)
    }
}
