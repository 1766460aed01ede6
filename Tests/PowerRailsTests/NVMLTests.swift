import Accounting
import Foundation
import MeterCore
import PowerRails
import TestSupport
import Testing

/// A fake libnvidia-ml built from Fixtures/fake_nvml.c for one test, with its own state file.
struct FakeNVML {
    let dir: TemporaryDirectory
    let libraryPath: String
    var statePath: String { dir.file("state") }

    init(defines: [String] = []) throws {
        dir = TemporaryDirectory("metergate-nvml")
        libraryPath = dir.file("libnvidia-ml.so.1")
        guard let compiler = which("cc") ?? which("gcc") ?? which("clang") else {
            throw CompileError(output: "no C compiler (cc, gcc or clang) on PATH; scripts/apt-packages.txt lists gcc")
        }
        let result = try runProcess(compiler, ["-shared", "-fPIC", "-Wall", "-Werror", "-DFAKE_NVML_STATE=\"\(statePath)\""]
            + defines.map { "-D\($0)" } + ["\(fixtures)/fake_nvml.c", "-o", libraryPath])
        guard result.status == 0 else { throw CompileError(output: result.stderr) }
    }

    struct CompileError: Error, CustomStringConvertible {
        let output: String
        var description: String { "compiling the fake NVML failed: \(output)" }
    }

    /// uuid name energy_mJ power_mW limit_mW module_power_mW lost (-1: not supported)
    func set(_ lines: String...) { dir.write("state", lines.joined(separator: "\n") + "\n") }
}

let h100 = "GPU-5a1c7f3e-0d6b-4b57-9a3e-2f1d8c4b6e01"
let p100 = "GPU-0b3e9a2d-77c1-4e0f-8d5a-6c2b1e9f3a10"
let gh200 = "GPU-9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b"

@Suite(.timeLimit(.minutes(5))) struct NVMLTests {
    @Test func gpusAreEnumeratedByUUIDWithWhatTheySupport() throws {
        let fake = try FakeNVML()
        defer { fake.dir.cleanup() }
        fake.set("\(h100) NVIDIA_H100_80GB_HBM3 5000000 350000 700000 -1 0", "\(p100) Tesla_P100 -1 180000 250000 -1 0")
        let nvml = try NVMLLibrary(path: fake.libraryPath)
        #expect(nvml.driverVersion == "550.54.15-fake")
        let devices = try nvml.devices()
        #expect(devices.map(\.uuid) == [h100, p100])
        #expect(devices[0].capabilities == [.energyCounter, .power])
        #expect(devices[0].powerLimitMilliwatts == 700_000)
        #expect(devices[1].capabilities == [.power])
        #expect(devices[1].name == "Tesla_P100")

        #expect(try nvml.read(uuid: h100) == NVMLReading(uuid: h100, energyMillijoules: 5_000_000, powerMilliwatts: 350_000, modulePowerMilliwatts: nil))
        #expect(try nvml.read(uuid: p100).energyMillijoules == nil)
        #expect(try nvml.read(uuid: p100).powerMilliwatts == 180_000)
    }

    @Test func aDriverReloadRestartsTheCounterAndTheAccountingSeesAReset() throws {
        let fake = try FakeNVML()
        defer { fake.dir.cleanup() }
        fake.set("\(h100) H100 5000000 350000 700000 -1 0")
        let nvml = try NVMLLibrary(path: fake.libraryPath)
        var gpu = CounterAccountant(configuration: .init(
            settings: SourceSettings(meter: try MeterID(validating: "gpu-h100"), source: .gpu, grid: try IntervalGrid(periodMillis: 60_000)),
            scale: .millijoules, ratedPowerWatts: 700, afterReset: .countFromZero))
        let t0 = Timestamp(wallNanos: 1_767_225_600_000_000_000, monotonicNanos: 9_000_000_000_000)
        _ = try gpu.add(.init(time: t0, importCount: try #require(nvml.read(uuid: h100).energyMillijoules)))
        fake.set("\(h100) H100 1200 350000 700000 -1 0") // the driver was reloaded: mJ since then
        let t1 = Timestamp(wallNanos: t0.wallNanos + 60_000_000_000, monotonicNanos: t0.monotonicNanos + 60_000_000_000)
        let closed = try gpu.add(.init(time: t1, importCount: try #require(nvml.read(uuid: h100).energyMillijoules)))
        #expect(closed.first?.events.contains(.reset(from: 5_000_000, to: 1200, paidCounts: 1200)) == true)
        #expect(closed.first?.result.quality == .gap)
    }

    @Test func aLostGPUIsReportedAndFoundAgainByUUID() throws {
        let fake = try FakeNVML()
        defer { fake.dir.cleanup() }
        fake.set("\(h100) H100 5000000 350000 700000 -1 0")
        let nvml = try NVMLLibrary(path: fake.libraryPath)
        _ = try nvml.read(uuid: h100)
        fake.set("\(h100) H100 5000000 350000 700000 -1 1")
        let lost = #expect(throws: NVMLError.self) { try nvml.read(uuid: h100) }
        #expect(lost?.code == .gpuIsLost)
        #expect(lost?.uuid == h100)
        #expect(lost?.description.contains("fell off the bus") == true)
        #expect(try nvml.devices().first?.problem?.code == .gpuIsLost)
        fake.set("\(h100) H100 5000100 350000 700000 -1 0")
        #expect(try nvml.read(uuid: h100).energyMillijoules == 5_000_100)
        fake.set("\(p100) P100 -1 100000 250000 -1 0")
        #expect(throws: NVMLError.self) { try nvml.read(uuid: h100) }
    }

    @Test func graceHopperReportsModuleScope() throws {
        let fake = try FakeNVML()
        defer { fake.dir.cleanup() }
        fake.set("\(gh200) GH200 7000000 500000 900000 620000 0")
        let nvml = try NVMLLibrary(path: fake.libraryPath)
        #expect(try nvml.devices().first?.capabilities == [.energyCounter, .power, .modulePower])
        #expect(try nvml.read(uuid: gh200).modulePowerMilliwatts == 620_000)
        let inventory = RailInventory.discover(root: fake.dir.path, nvmlLibraryPath: fake.libraryPath)
        let rail = try #require(inventory.rail(id: "nvml:\(gh200)"))
        #expect(rail.notes.contains { $0.contains("Grace CPU") })
        #expect(inventory.nvmlStatus == "driver 550.54.15-fake, 1 GPU(s)")
        #expect(inventory.render().contains("7000000 mJ"))
        #expect(rail.family == .nvml)
    }

    @Test func anOldDriverWithoutTheEnergyFunctionFallsBackToPower() async throws {
        let fake = try FakeNVML(defines: ["FAKE_NVML_WITHOUT_ENERGY_FUNCTION"])
        defer { fake.dir.cleanup() }
        fake.set("\(h100) H100 5000000 350000 700000 -1 0")
        let nvml = try NVMLLibrary(path: fake.libraryPath)
        #expect(try nvml.devices().first?.capabilities == [.power])
        let sampler = RailSampler(tree: SysfsTree(root: fake.dir.path), nvml: nvml)
        let rail = RailDescription(id: "nvml:\(h100)", source: .gpu, chip: "H100", label: h100, device: nil, method: .nvml(uuid: h100))
        #expect(try await sampler.read(rail) == .power(microwatts: 350_000_000))
    }

    @Test func aGPUThatReportsNothingIsNotSupported() throws {
        let fake = try FakeNVML()
        defer { fake.dir.cleanup() }
        fake.set("\(p100) P100 -1 -1 -1 -1 0")
        let nvml = try NVMLLibrary(path: fake.libraryPath)
        let error = #expect(throws: NVMLError.self) { try nvml.read(uuid: p100) }
        #expect(error?.code == .notSupported)
    }

    @Test func noDriverIsAClearStatusNotACrash() throws {
        let missing = #expect(throws: NVMLError.self) { try NVMLLibrary(path: "/nonexistent/libnvidia-ml.so.1") }
        guard case .libraryNotLoaded(let path, _) = missing?.kind else { Issue.record("expected libraryNotLoaded"); return }
        #expect(path == "/nonexistent/libnvidia-ml.so.1")
        #expect(missing?.description.contains("no NVIDIA driver") == true)

        let fake = try FakeNVML()
        defer { fake.dir.cleanup() }
        // No state file: the kernel driver is "not loaded".
        let notLoaded = #expect(throws: NVMLError.self) { try NVMLLibrary(path: fake.libraryPath) }
        #expect(notLoaded?.code == .driverNotLoaded)
    }

    @Test func theSamplerReadsGPUEnergyInMicrojoules() async throws {
        let fake = try FakeNVML()
        defer { fake.dir.cleanup() }
        fake.set("\(h100) H100 5000000 350000 700000 -1 0")
        let nvml = try NVMLLibrary(path: fake.libraryPath)
        let inventory = RailInventory.discover(root: fake.dir.path, nvmlLibraryPath: fake.libraryPath)
        let rail = try #require(inventory.rails.first)
        #expect(rail.id == "nvml:\(h100)")
        let sampler = RailSampler(tree: inventory.tree, nvml: nvml)
        #expect(try await sampler.read(rail) == .energy(microjoules: 5_000_000_000))
    }
}
