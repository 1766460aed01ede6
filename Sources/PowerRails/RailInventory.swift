import Foundation
import MeterCore

/// What power and energy rails this machine offers: hwmon channels, RAPL zones and NVIDIA GPUs.
/// `metergate scan --rails` prints `render()`.
public struct RailInventory: Sendable {
    public var rails: [RailDescription]
    /// NVML's state in words: the driver version and GPU count, or why there is no NVML.
    public var nvmlStatus: String
    /// GPUs NVML listed but that cannot be used, with the reason.
    public var unusableGPUs: [String]
    public let tree: SysfsTree
    /// The NVML session discovery opened, kept so `render()` and a `RailSampler` can read the GPUs; nil without a driver.
    public let nvml: NVMLLibrary?

    /// Looks under `root` (normally "/") for hwmon and powercap rails and asks NVML (loaded from
    /// `nvmlLibraryPath`; nil skips it) for GPUs. Never fails: a missing driver is a status line.
    /// Blocking I/O: a one-shot command may call it directly, a service from a dedicated queue.
    public static func discover(root: String = "/", nvmlLibraryPath: String? = NVMLLibrary.defaultPath) -> RailInventory {
        let tree = SysfsTree(root: root)
        var rails = SysfsRails.discover(in: tree)
        var status = "not asked"
        var unusable: [String] = []
        var library: NVMLLibrary?
        if let nvmlLibraryPath {
            do {
                let nvml = try NVMLLibrary(path: nvmlLibraryPath)
                library = nvml
                let devices = try nvml.devices()
                status = "driver \(nvml.driverVersion ?? "unknown"), \(devices.count) GPU(s)"
                for device in devices {
                    guard let uuid = device.uuid, device.problem == nil else {
                        unusable.append("GPU index \(device.index): \(device.problem.map(String.init(describing:)) ?? "no UUID")")
                        continue
                    }
                    rails.append(NVMLRails.description(of: device, uuid: uuid))
                }
            } catch {
                status = error.description
            }
        }
        return RailInventory(rails: rails, nvmlStatus: status, unusableGPUs: unusable, tree: tree, nvml: library)
    }

    /// The rail with this id, or the one whose chip and label match (and device, if given): what a
    /// configuration names. Never matched by hwmonN.
    public func rail(id: String) -> RailDescription? { rails.first { $0.id == id } }

    public func rails(chip: String, label: String, device: String? = nil) -> [RailDescription] {
        rails.filter { $0.chip == chip && $0.label == label && (device == nil || $0.device == device) }
    }

    /// A table of the rails with a current value each (read now; a rail that cannot be read shows why), then
    /// NVML's status and the notes. Reads sysfs: blocking.
    public func render() -> String {
        var lines: [String] = []
        let header = ["SOURCE", "ID", "READS", "NOW"]
        var rows: [[String]] = []
        var notes: [String] = []
        for rail in rails {
            let reads: String
            switch rail.method {
            case .power: reads = "power µW"
            case .powerMilliwatts: reads = "power mW"
            case .voltageTimesCurrent: reads = "mV × mA"
            case .energy: reads = "energy µJ"
            case .raplEnergy(_, let range): reads = range.map { "energy µJ, wraps at \($0)" } ?? "energy µJ"
            case .nvml: reads = "NVML"
            }
            var now: String
            switch rail.method {
            case .nvml(let uuid):
                if let nvml, let reading = try? nvml.read(uuid: uuid) {
                    now = [reading.energyMillijoules.map { "\($0) mJ" }, reading.powerMilliwatts.map { String(format: "%.3f W", Double($0) / 1000) }]
                        .compactMap { $0 }.joined(separator: ", ")
                } else {
                    now = "-"
                }
            default:
                do {
                    switch try SysfsRails.read(rail, in: tree) {
                    case .power(let microwatts): now = String(format: "%.3f W", Double(microwatts) / 1_000_000)
                    case .energy(let microjoules): now = "\(microjoules) µJ"
                    }
                } catch {
                    now = "unreadable: \(error)"
                }
            }
            rows.append([rail.source.rawValue, rail.id, reads, now])
            for note in rail.notes { notes.append("\(rail.id): \(note)") }
        }
        if rows.isEmpty {
            lines.append("no power or energy rails found under \(tree.root)")
        } else {
            let widths = (0..<header.count).map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
            for row in [header] + rows {
                lines.append(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                    .trimmingCharacters(in: .whitespaces))
            }
        }
        lines.append("NVML: \(nvmlStatus)")
        lines += unusableGPUs.map { "unusable: \($0)" }
        lines += notes.map { "note: \($0)" }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// NVIDIA GPUs as rails.
public enum NVMLRails {
    static func description(of device: NVMLDevice, uuid: String) -> RailDescription {
        var notes: [String] = []
        if device.capabilities.contains(.energyCounter) {
            notes.append("energy counter (mJ since the driver loaded; restarts after a driver reload)")
        } else if device.capabilities.contains(.power) {
            notes.append("no energy counter: power is integrated")
        } else {
            notes.append("reports neither energy nor power")
        }
        if device.capabilities.contains(.modulePower) {
            notes.append("module scope (Grace Hopper): its energy covers the Grace CPU and memory; do not add a CPU rail to it")
        }
        if let limit = device.powerLimitMilliwatts { notes.append("power limit \(Double(limit) / 1000) W") }
        return RailDescription(id: "nvml:\(uuid)", source: .gpu, chip: device.name ?? "NVIDIA GPU", label: uuid,
                               device: nil, method: .nvml(uuid: uuid), notes: notes)
    }
}

/// Reads rails off the cooperative pool: sysfs reads and NVML calls block, so they run on this actor's own
/// serial queue.
public actor RailSampler {
    private let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public let tree: SysfsTree
    public let nvml: NVMLLibrary?

    public init(tree: SysfsTree, nvml: NVMLLibrary?) {
        self.executor = SerialQueueExecutor(label: "metergate.rails")
        self.tree = tree
        self.nvml = nvml
    }

    /// Reads one rail. NVML energy (mJ) is returned in µJ; an NVML GPU without an energy counter returns power.
    /// - Throws: `RailError` for sysfs rails, `NVMLError` for GPUs.
    public func read(_ rail: RailDescription) throws -> RailReading {
        if case .nvml(let uuid) = rail.method {
            guard let nvml else {
                throw NVMLError(.libraryNotLoaded(path: NVMLLibrary.defaultPath, reason: "the sampler has no NVML"), uuid: uuid)
            }
            let reading = try nvml.read(uuid: uuid)
            if let energy = reading.energyMillijoules { return .energy(microjoules: energy * 1000) }
            return .power(microwatts: Int64(reading.powerMilliwatts ?? 0) * 1000)
        }
        return try SysfsRails.read(rail, in: tree)
    }
}
