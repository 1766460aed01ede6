import ArgumentParser
import ConfigFile
import Foundation
import Gateway
import MeterCore
import Modbus
import PowerRails
import Pulse

/// `metergate scan`: walk unit ids on a bus, identify meters; or print a profile's request plan; or read one meter once.
struct Scan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Walk unit ids on an RTU bus or a TCP host and identify the meters that answer.",
        discussion: """
            Examples:
              metergate scan --rtu /dev/ttyUSB0 --baud 9600 --units 1-32
              metergate scan --rtu /dev/ttyAMA0 --direction-gpio gpiochip0:4 --units 1-10
              metergate scan --tcp 192.168.1.50:502
              metergate scan --plan eastron-sdm630
              metergate scan --tcp 127.0.0.1:1502 --unit 1 --read eastron-sdm630
              metergate scan --rails
            A unit is identified by the SunSpec marker and common model, or by a profile's identify: registers.
            Exit codes: 0 something answered (or the plan was printed), 1 nothing answered or the read failed, 2 usage error.
            """)

    @Option(help: "Modbus TCP HOST:PORT to scan.")
    var tcp: String?

    @Option(help: "Serial device of the RTU bus to scan.")
    var rtu: String?

    @Option(help: "RTU baud rate.")
    var baud: Int = 9600

    @Option(help: "RTU parity: N, E or O.")
    var parity: String = "N"

    @Option(name: .customLong("direction-gpio"),
            help: "With --rtu: drive the RS-485 transceiver's DE/RE pins from this GPIO line, CHIP:LINE (e.g. gpiochip0:4), as the board file's direction_gpio.")
    var directionGPIO: String?

    @Flag(help: "With --direction-gpio: the line is active low (low while sending).")
    var directionActiveLow = false

    @Option(help: "With --direction-gpio: settle time before and after each frame, in microseconds (default: one byte time).")
    var rtsDelay: Int?

    @Option(help: "Unit ids to walk: N, N-M, or a comma list of those (default 1-247).")
    var units: String = "1-247"

    @Option(help: "With --read: the unit id to read.")
    var unit: Int?

    @Option(help: "Response timeout per request, e.g. 300ms.")
    var timeout: String = "300ms"

    @Option(help: "Print the request plan of PROFILE and exit (no bus needed).")
    var plan: String?

    @Option(help: "Read PROFILE once from --unit and print its values with units.")
    var read: String?

    @Option(name: .customLong("profiles"), help: "A directory of meter profiles (default: ./profiles, then the installed set).")
    var profileDirectories: [String] = []

    @Flag(help: "List the power rails this machine offers (hwmon, INA3221, RAPL, NVML GPUs) and exit.")
    var rails = false

    @Option(help: "With --rails: read sysfs under this root instead of / (e.g. a recorded tree).")
    var sysfsRoot: String = "/"

    @Option(help: "With --rails: the NVML library to load (default: libnvidia-ml.so.1 from the system).")
    var nvml: String?

    @OptionGroup var log: LogOptions

    func run() async throws {
        log.bootstrap(default: "warning")
        if rails {
            guard tcp == nil, rtu == nil, plan == nil, read == nil else { throw Failure.usage("--rails needs no bus: drop --tcp/--rtu/--plan/--read") }
            // Sysfs reads and dlopen block: keep them off the cooperative pool.
            let root = sysfsRoot, library = nvml ?? NVMLLibrary.defaultPath
            let inventory = await runBlocking { RailInventory.discover(root: root, nvmlLibraryPath: library) }
            print(inventory.render())
            // Nothing to configure is a failure for a script that asked for rails (exit 1), not a success.
            if inventory.rails.isEmpty { throw Failure.run("no power or energy rails found under \(root) (NVML: \(inventory.nvmlStatus))") }
            return
        }
        let library: ProfileLibrary
        do { library = try ProfileLibrary(directories: profileDirectories.isEmpty ? DataDirectories.profiles() : profileDirectories) }
        catch { throw Failure.usage(error.description) }
        if let plan {
            guard tcp == nil, rtu == nil, read == nil else { throw Failure.usage("--plan needs no bus: drop --tcp/--rtu/--read") }
            print(try planText(profile(plan, library)), terminator: "")
            return
        }
        let transport = try makeTransport()
        guard let timeoutMillis = parseMillis(timeout), timeoutMillis > 0 else { throw Failure.usage("--timeout '\(timeout)': expected a duration such as 300ms or 1s") }
        let direction = try makeDirection()
        let connection: ModbusConnection
        do {
            connection = try ModbusConnection(transport, responseTimeout: .milliseconds(timeoutMillis), direction: direction, directionDelayMicroseconds: rtsDelay)
        } catch { throw Failure.run("\(error)") }
        defer { Task { await connection.close() } }
        if let read {
            guard let unit, (1...247).contains(unit) else { throw Failure.usage("--read needs --unit N (1…247)") }
            try await readOnce(profile(read, library), unit: unit, connection: connection)
            return
        }
        guard unit == nil else { throw Failure.usage("--unit goes with --read; use --units to choose what to scan") }
        let ids = try parseUnits(units)
        try await walk(ids, connection: connection, transport: transport, library: library)
    }

    private func profile(_ id: String, _ library: ProfileLibrary) throws -> MeterProfile {
        guard let p = library[id] else {
            throw Failure.usage("no profile '\(id)' (known: \(library.profiles.keys.sorted().joined(separator: ", ")))")
        }
        return p
    }

    private func makeTransport() throws -> ModbusTransport {
        switch (tcp, rtu) {
        case (let tcp?, nil):
            let parts = tcp.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port) else { throw Failure.usage("--tcp '\(tcp)': expected HOST:PORT") }
            return .tcp(host: String(parts[0]), port: port)
        case (nil, let device?):
            guard parity.count == 1, let p = SerialSettings.Parity(rawValue: Character(parity.uppercased())) else {
                throw Failure.usage("--parity '\(parity)': expected N, E or O")
            }
            guard (300...4_000_000).contains(baud) else { throw Failure.usage("--baud \(baud): expected 300…4000000") }
            return .rtu(SerialSettings(device: device, baud: baud, parity: p))
        case (nil, nil): throw Failure.usage("give the bus to scan: --tcp HOST:PORT or --rtu DEVICE (or --plan PROFILE)")
        default: throw Failure.usage("--tcp and --rtu exclude each other")
        }
    }

    /// The RS-485 direction line of `--direction-gpio`, requested as an output in the receive state.
    private func makeDirection() throws -> GPIODirectionControl? {
        guard let spec = directionGPIO else {
            guard !directionActiveLow, rtsDelay == nil else { throw Failure.usage("--direction-active-low and --rts-delay go with --direction-gpio") }
            return nil
        }
        guard rtu != nil else { throw Failure.usage("--direction-gpio goes with --rtu") }
        let parts = spec.split(separator: ":")
        guard parts.count == 2, !parts[0].isEmpty, let line = Int(parts[1]), (0...1023).contains(line) else {
            throw Failure.usage("--direction-gpio '\(spec)': expected CHIP:LINE, e.g. gpiochip0:4")
        }
        if let rtsDelay, !(0...100_000).contains(rtsDelay) { throw Failure.usage("--rts-delay \(rtsDelay): expected 0…100000 microseconds") }
        do { return try GPIODirectionControl(chip: String(parts[0]), offset: line, activeLow: directionActiveLow) } catch {
            throw Failure.run("--direction-gpio \(spec): \(error)")
        }
    }

    private func parseUnits(_ text: String) throws -> [Int] {
        var ids: [Int] = []
        for part in text.split(separator: ",") {
            let bounds = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(bounds.count), let low = bounds[0], let high = bounds.last ?? nil, low <= high,
                  (1...247).contains(low), (1...247).contains(high) else {
                throw Failure.usage("--units '\(text)': expected N, N-M or a comma list, within 1…247")
            }
            ids += Array(low...high)
        }
        return ids
    }

    func planText(_ profile: MeterProfile) -> String {
        let plan = RequestPlan(profile: profile)
        let naive = RequestPlan.onePerValue(profile: profile)
        var out = "plan for \(profile.id) (\(profile.manufacturer) \(profile.model)): \(profile.fields.count) values in "
        out += "\(plan.requests.count) request\(plan.requests.count == 1 ? "" : "s"), \(plan.registerCount) registers "
        out += "(one request per value: \(naive.requests.count) requests, \(naive.registerCount) registers)\n"
        out += "  limits: max_registers \(profile.maxRegistersPerRequest), max_gap \(profile.maxGap), inter_request_delay \(profile.interRequestDelay.components.seconds * 1000 + profile.interRequestDelay.components.attoseconds / 1_000_000_000_000_000) ms\n"
        if let model = profile.sunspecModel {
            out += "  addresses are offsets into SunSpec model \(model), found on the device from the SunS marker\n"
        }
        for (i, r) in plan.requests.enumerated() { out += "  \(i + 1). \(r)\n" }
        let polled = RequestPlan(profile: profile, quantities: ReadingPipeline.sampledQuantities)
        let names = ReadingPipeline.sampledQuantities.map(\.rawValue).sorted().joined(separator: ", ")
        out += "what metergate run reads, the values records are made of (\(names)): "
        out += "\(polled.requests.count) request\(polled.requests.count == 1 ? "" : "s"), \(polled.registerCount) registers\n"
        for (i, r) in polled.requests.enumerated() { out += "  \(i + 1). \(r)\n" }
        return out
    }

    private func readOnce(_ profile: MeterProfile, unit: Int, connection: ModbusConnection) async throws {
        var located = profile
        do {
            if let model = profile.sunspecModel {
                guard let device = try await SunSpecDiscovery.discover(unit: unit, reader: connection) else {
                    throw Failure.run("unit \(unit): no SunSpec marker at \(SunSpecDiscovery.bases.map(String.init).joined(separator: ", "))")
                }
                guard let entry = device.models.first(where: { $0.id == model }) else {
                    throw Failure.run("unit \(unit): no SunSpec model \(model) (found \(device.models.map(\.id)))")
                }
                located = profile.located(at: entry.address)
                print("unit \(unit): SunSpec \(device.manufacturer) \(device.model) SN \(device.serialNumber), model \(model) at \(entry.address)")
            }
            let readout = try await MeterReader(profile: located).read(unit: unit, from: connection)
            print("unit \(unit): \(profile.id), \(readout.requests) request(s)")
            // What records will name the meter by, and what `serial:` would pin.
            if profile.identity != nil {
                switch try await profile.readIdentity(unit: unit, from: connection) {
                case .identified(let identity): print("  identity             \(identity.sourceID) (serial: \"\(identity.serial)\")")
                case .notOffered(let why): print("  identity             none: \(why)")
                }
            }
            for field in profile.fields {
                let value = readout.values[field.quantity].map { String(format: "%.6g", $0) } ?? "n/a"
                print("  \(field.quantity.rawValue.padding(toLength: 20, withPad: " ", startingAt: 0)) \(value) \(field.unit.baseSymbol)")
            }
            for e in readout.refused { print("  refused: \(e)") }
        } catch let error as ModbusError {
            throw Failure.run("unit \(unit): \(error)")
        }
    }

    private func walk(_ ids: [Int], connection: ModbusConnection, transport: ModbusTransport, library: ProfileLibrary) async throws {
        var answered = 0
        let checked = library.profiles.values.filter { !$0.identification.isEmpty }.sorted { $0.id < $1.id }
        for (n, id) in ids.enumerated() {
            // mbmd pauses 40 ms between unit ids while scanning an RS-485 line.
            if n > 0, case .rtu = transport { try? await Task.sleep(for: .milliseconds(40)) }
            do throws(ModbusError) {
                if let device = try await SunSpecDiscovery.discover(unit: id, reader: connection) {
                    answered += 1
                    let models = device.models.map(\.id)
                    let profiles = models.compactMap { library.sunspec(model: $0)?.id }
                    print("unit \(id): SunSpec \(device.manufacturer) \(device.model) SN \(device.serialNumber) at \(device.base), models \(models.map(String.init).joined(separator: ", "))"
                          + (profiles.isEmpty ? "" : " → \(profiles.joined(separator: ", "))"))
                    continue
                }
                // The unit answered (with exceptions or other data): it is alive. Which profile fits?
                answered += 1
                var matches: [String] = []
                for profile in checked {
                    var all = true
                    for check in profile.identification {
                        do {
                            let words = try await connection.readRegisters(unit: id, space: check.space, address: check.address, count: check.type.registerCount)
                            if !check.matches(words) { all = false; break }
                        } catch {
                            if case .exception = error.kind { all = false; break }
                            throw error
                        }
                    }
                    if all { matches.append(profile.id) }
                }
                var serial = ""
                if let first = matches.compactMap({ library[$0] }).first(where: { $0.identity != nil }),
                   case .identified(let identity) = try await first.readIdentity(unit: id, from: connection) {
                    serial = "; serial \(identity.serial)"
                }
                print("unit \(id): answers; " + (matches.isEmpty ? "no profile's identification matches" : "matches \(matches.joined(separator: ", "))") + serial)
            } catch {
                switch error.kind {
                case .timeout: continue   // silent: nothing at this id (one timeout spent)
                case .connection where transport.isTCPTransport:
                    throw Failure.run("\(error)")
                default:
                    print("unit \(id): \(error)")
                }
            }
        }
        guard answered > 0 else { throw Failure.run("no unit answered on \(transport) (units \(units))") }
    }
}

extension ModbusTransport {
    var isTCPTransport: Bool { if case .tcp = self { return true } else { return false } }
}

/// `300ms`, `1s`, `1.5s` in milliseconds.
func parseMillis(_ s: String) -> Int64? {
    if s.hasSuffix("ms"), let v = Double(s.dropLast(2)), v >= 0 { return Int64(v.rounded()) }
    if s.hasSuffix("s"), let v = Double(s.dropLast()), v >= 0 { return Int64((v * 1000).rounded()) }
    return nil
}
