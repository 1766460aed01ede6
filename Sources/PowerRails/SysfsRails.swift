import MeterCore

/// Discovers hwmon and powercap/RAPL rails under a sysfs root and reads them.
///
/// Units at this boundary (kernel `Documentation/hwmon/sysfs-interface.rst`, `ina3221.rst`, `ina2xx.rst`,
/// `powercap.rst`): power µW, energy µJ, voltage mV, current mA. Readers take a `SysfsTree`, so tests run on
/// recorded trees.
public enum SysfsRails {
    /// Every hwmon power or energy channel and every RAPL zone under `tree`.
    public static func discover(in tree: SysfsTree) -> [RailDescription] {
        hwmon(in: tree) + ina3221xIIO(in: tree) + rapl(in: tree)
    }

    // MARK: hwmon

    static func hwmon(in tree: SysfsTree) -> [RailDescription] {
        var rails: [RailDescription] = []
        for entry in tree.list("sys/class/hwmon") where entry.hasPrefix("hwmon") {
            let base = "sys/class/hwmon/\(entry)"
            guard let chip = tree.text("\(base)/name"), !chip.isEmpty else { continue }
            let device = tree.linkTarget("\(base)/device")
            let files = Set(tree.list(base))
            var found: [RailDescription] = []
            if chip == "ina3221" {
                found = ina3221(tree: tree, base: base, files: files, device: device)
            } else {
                found = powerAndEnergy(tree: tree, base: base, chip: chip, files: files, device: device)
                if found.isEmpty, chip.hasPrefix("ina2") || chip == "ina260" {
                    found = ina2xxWithoutPower(tree: tree, base: base, chip: chip, files: files, device: device)
                }
            }
            rails += found
        }
        return addJetsonNotes(rails).sorted { $0.id < $1.id }
    }

    private static func hwmonID(chip: String, device: String?, entry base: String, label: String) -> String {
        // Without a device link only the hwmonN number is left; it is not stable, so say so in the id.
        let where_ = device ?? "unstable-\(base.split(separator: "/").last ?? "")"
        return "hwmon:\(chip)@\(where_):\(label)"
    }

    /// INA3221: channels 1–3, P [µW] = in_N [mV] × curr_N [mA]; in4–in7 are shunt voltages and the sum.
    private static func ina3221(tree: SysfsTree, base: String, files: Set<String>, device: String?) -> [RailDescription] {
        var rails: [RailDescription] = []
        for n in 1...3 {
            guard files.contains("in\(n)_input"), files.contains("curr\(n)_input") else { continue }
            if let enabled = tree.integer("\(base)/in\(n)_enable"), enabled == 0 { continue }
            let label = tree.text("\(base)/in\(n)_label") ?? "channel\(n)"
            rails.append(RailDescription(
                id: hwmonID(chip: "ina3221", device: device, entry: base, label: label), source: .hwmon,
                chip: "ina3221", label: label, device: device,
                method: .voltageTimesCurrent(voltagePath: "\(base)/in\(n)_input", currentPath: "\(base)/curr\(n)_input")))
        }
        return rails
    }

    /// `power*_average` (preferred, as Kepler does: it is what the chip averaged) or `power*_input`, and `energy*_input`.
    private static func powerAndEnergy(tree: SysfsTree, base: String, chip: String, files: Set<String>, device: String?) -> [RailDescription] {
        var rails: [RailDescription] = []
        var notes: [String] = []
        if chip == "amdgpu" {
            notes.append("amdgpu power is the whole SoC's; on an APU it includes the CPU, so do not add a CPU rail to it")
        }
        for index in channelIndices(prefix: "power", suffixes: ["_average", "_input"], in: files) {
            let attribute = files.contains("power\(index)_average") ? "power\(index)_average" : "power\(index)_input"
            let label = tree.text("\(base)/power\(index)_label") ?? attribute
            rails.append(RailDescription(
                id: hwmonID(chip: chip, device: device, entry: base, label: label), source: .hwmon, chip: chip,
                label: label, device: device, method: .power(path: "\(base)/\(attribute)"), notes: notes))
        }
        for index in channelIndices(prefix: "energy", suffixes: ["_input"], in: files) {
            let label = tree.text("\(base)/energy\(index)_label") ?? "energy\(index)_input"
            rails.append(RailDescription(
                id: hwmonID(chip: chip, device: device, entry: base, label: label), source: .hwmon, chip: chip,
                label: label, device: device, method: .energy(path: "\(base)/energy\(index)_input"), notes: notes))
        }
        return rails
    }

    /// ina2xx chips that expose no power attribute: bus voltage in1 × current curr1 (in0 is the shunt voltage).
    private static func ina2xxWithoutPower(tree: SysfsTree, base: String, chip: String, files: Set<String>, device: String?) -> [RailDescription] {
        guard files.contains("in1_input"), files.contains("curr1_input") else { return [] }
        let label = tree.text("\(base)/in1_label") ?? "bus"
        return [RailDescription(
            id: hwmonID(chip: chip, device: device, entry: base, label: label), source: .hwmon, chip: chip, label: label,
            device: device, method: .voltageTimesCurrent(voltagePath: "\(base)/in1_input", currentPath: "\(base)/curr1_input"))]
    }

    private static func channelIndices(prefix: String, suffixes: [String], in files: Set<String>) -> [Int] {
        var indices = Set<Int>()
        for file in files where file.hasPrefix(prefix) {
            for suffix in suffixes where file.hasSuffix(suffix) {
                if let n = Int(file.dropFirst(prefix.count).dropLast(suffix.count)) { indices.insert(n) }
            }
        }
        return indices.sorted()
    }

    /// Jetson AGX Orin measures GPU/SoC, CPU/CV and 5 V system rails but has no VDD_IN (module input) rail.
    private static func addJetsonNotes(_ rails: [RailDescription]) -> [RailDescription] {
        let labels = Set(rails.filter { $0.chip == "ina3221" }.map(\.label))
        guard labels.contains("VDD_GPU_SOC"), !labels.contains("VDD_IN") else { return rails }
        return rails.map { rail in
            guard rail.chip == "ina3221" else { return rail }
            var rail = rail
            rail.notes.append("Jetson AGX Orin has no VDD_IN rail: these rails are partial and miss the carrier board")
            return rail
        }
    }

    // MARK: Jetson L4T 32 ina3221x (IIO)

    /// The out-of-tree `ina3221x` IIO driver of L4T 32 and older (Xavier, TX2, Nano): `rail_name_N` and
    /// `in_powerN_input` in mW under `/sys/bus/i2c/drivers/ina3221x/<bus-address>/iio:deviceM/`.
    static func ina3221xIIO(in tree: SysfsTree) -> [RailDescription] {
        var rails: [RailDescription] = []
        let driver = "sys/bus/i2c/drivers/ina3221x"
        for device in tree.list(driver) where device.contains("-") {
            for iio in tree.list("\(driver)/\(device)") where iio.hasPrefix("iio:device") {
                let base = "\(driver)/\(device)/\(iio)"
                let files = Set(tree.list(base))
                for n in 0...2 where files.contains("in_power\(n)_input") {
                    let label = tree.text("\(base)/rail_name_\(n)") ?? "channel\(n)"
                    rails.append(RailDescription(
                        id: "iio:ina3221x@\(device):\(label)", source: .hwmon, chip: "ina3221x", label: label, device: device,
                        method: .powerMilliwatts(path: "\(base)/in_power\(n)_input")))
                }
            }
        }
        return rails.sorted { $0.id < $1.id }
    }

    // MARK: powercap / RAPL

    static func rapl(in tree: SysfsTree) -> [RailDescription] {
        var rails: [RailDescription] = []
        let zones = tree.list("sys/class/powercap").filter { $0.hasPrefix("intel-rapl:") || $0.hasPrefix("intel-rapl-mmio:") }
        for zone in zones {
            let base = "sys/class/powercap/\(zone)"
            guard let name = tree.text("\(base)/name"), tree.list(base).contains("energy_uj") else { continue }
            let range = tree.integer("\(base)/max_energy_range_uj").flatMap { $0 > 0 ? UInt64($0) : nil }
            var notes: [String] = []
            let parts = zone.split(separator: ":")
            if parts.count > 2 {
                let parent = parts.dropLast().joined(separator: ":")
                let parentName = tree.text("sys/class/powercap/\(parent)/name") ?? parent
                notes.append("part of \(parent) (\(parentName)): do not add it to that zone")
            }
            if zone.hasPrefix("intel-rapl-mmio:") {
                notes.append("the same package domain read over MMIO: do not add it to the MSR zone of the same name")
            }
            if (try? tree.readInteger("\(base)/energy_uj")) == nil {
                notes.append("energy_uj is not readable by this user (root-only since Linux 5.10)")
            }
            rails.append(RailDescription(
                id: "rapl:\(zone)", source: .rapl, chip: name, label: name, device: zone,
                method: .raplEnergy(path: "\(base)/energy_uj", wrapsAtMicrojoules: range), notes: notes))
        }
        return rails
    }

    // MARK: reading

    /// Reads one sysfs rail. Blocking file I/O: call from a dedicated queue (`RailSampler`).
    public static func read(_ rail: RailDescription, in tree: SysfsTree) throws(RailError) -> RailReading {
        switch rail.method {
        case .power(let path):
            return .power(microwatts: try tree.readInteger(path))
        case .powerMilliwatts(let path):
            let milliwatts = try tree.readInteger(path)
            let (microwatts, overflow) = milliwatts.multipliedReportingOverflow(by: 1000)
            guard !overflow else { throw RailError(path: tree.path(path), reason: .outOfRange("\(milliwatts) mW overflows")) }
            return .power(microwatts: microwatts)
        case .voltageTimesCurrent(let voltagePath, let currentPath):
            let millivolts = try tree.readInteger(voltagePath)
            let milliamps = try tree.readInteger(currentPath)
            let (product, overflow) = millivolts.multipliedReportingOverflow(by: milliamps)
            guard !overflow else {
                throw RailError(path: tree.path(voltagePath), reason: .outOfRange("\(millivolts) mV × \(milliamps) mA overflows"))
            }
            return .power(microwatts: product)
        case .energy(let path), .raplEnergy(let path, _):
            let value = try tree.readInteger(path)
            guard value >= 0 else { throw RailError(path: tree.path(path), reason: .outOfRange("negative energy counter \(value)")) }
            return .energy(microjoules: UInt64(value))
        case .nvml:
            throw RailError(path: rail.id, reason: .outOfRange("an NVML rail is read through NVMLLibrary, not sysfs"))
        }
    }
}
