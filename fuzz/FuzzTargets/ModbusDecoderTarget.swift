import Dispatch
import MeterCore
import Modbus
import Synchronization

/// Register words as a meter would answer them, through every decoder that reads what came off the wire:
/// the raw type decoders, every built-in profile's planned reads and identification checks, SunSpec
/// discovery and the SunSpec model profiles placed where the device said, and RTU frame arithmetic.
///
/// Promises checked: a decoded value is finite; an integer decodes back to the words it came from;
/// discovery ends (a chain of at most 64 models) and never reports a model outside the register space.
public struct ModbusDecoderTarget: FuzzTarget {
    public let name = "modbus"
    let profiles: [MeterProfile]
    let library: ProfileLibrary

    public init(repositoryRoot root: String) {
        library = (try? ProfileLibrary(directories: ["\(root)/profiles"])) ?? ProfileLibrary()
        profiles = library.profiles.values.sorted { $0.id < $1.id }
    }

    public func seeds(repositoryRoot root: String) -> [[UInt8]] {
        // What the built-in simulator's meters answer, plus a SunSpec device image at base 40000.
        var seeds: [[UInt8]] = []
        for (i, profile) in profiles.enumerated() {
            var bytes: [UInt8] = [UInt8(i)]
            for request in MeterReader(profile: profile).plan.requests {
                for k in 0..<request.count { bytes += [UInt8(truncatingIfNeeded: (request.address + k) >> 3), UInt8(truncatingIfNeeded: k)] }
            }
            seeds.append(bytes)
        }
        var device: [UInt16] = SunSpecDiscovery.marker + [1, 66] + [UInt16](repeating: 0x4142, count: 66)
        for model in [203, 1, 201] { device += [UInt16(model), 8] + [UInt16](repeating: 0x0102, count: 8) }
        device += [SunSpecDiscovery.endMarker, 0]
        seeds.append([0] + device.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
        return seeds
    }

    public func run(_ input: [UInt8]) -> [String] {
        var findings: [String] = []
        var cursor = ByteCursor(input)
        let selector = Int(cursor.byte())
        let words = cursor.words()
        findings += rawDecoders(words)
        if !profiles.isEmpty {
            let profile = profiles[selector % profiles.count]
            identification(profile, words)
            findings += blocking { await readout(profile, words, "\(profile.id)") }
        }
        findings += blocking { await sunspec(words) }
        _ = RTUFraming.requestLength(input)
        _ = RTUFraming.checkCRC(input)
        return findings
    }

    /// Every type in every word and byte order, at every length up to one past the type's.
    func rawDecoders(_ words: [UInt16]) -> [String] {
        var findings: [String] = []
        for type in RegisterType.allCases {
            for length in 0...min(words.count, type.registerCount + 1) {
                let slice = words.prefix(length)
                for wordOrder in WordOrder.allCases {
                    for byteOrder in ByteOrder.allCases {
                        let value = decodeRegisters(slice, as: type, wordOrder: wordOrder, byteOrder: byteOrder)
                        _ = registerBits(slice, as: type, wordOrder: wordOrder, byteOrder: byteOrder)
                        if (value != nil) != (length == type.registerCount) {
                            findings.append("decodeRegisters(\(Array(slice)), as: \(type)) returned \(String(describing: value)) for \(length) words")
                        }
                        if let value, type != .float32, type != .float64,
                           encodeRegisters(value, as: type, wordOrder: wordOrder, byteOrder: byteOrder) != Array(slice) {
                            findings.append("\(type) \(wordOrder)/\(byteOrder): \(Array(slice)) decodes to \(value), which encodes differently")
                        }
                    }
                }
            }
        }
        return findings
    }

    /// The profile's identification checks against the words (as the scan command reads them): no trap.
    func identification(_ profile: MeterProfile, _ words: [UInt16]) {
        for check in profile.identification {
            _ = check.matches(Array(words.prefix(check.type.registerCount)))
        }
        // Every type under each kind of expectation, as a profile file may declare them.
        for type in RegisterType.allCases {
            let slice = Array(words.prefix(type.registerCount))
            for expectation in [IdentificationCheck.Expectation.oneOf([0, 1, 0x7FFF_FFFF]), .range(-1e9...1e9)] {
                _ = IdentificationCheck(space: .holding, address: 0, type: type, scale: 0.1, expectation: expectation).matches(slice)
            }
        }
    }

    /// SunSpec discovery over a device whose holding registers from 40000 on are `words`, then each model's
    /// profile placed where the device says and read from the same registers.
    func sunspec(_ words: [UInt16]) async -> [String] {
        let reader = ImageReader(base: SunSpecDiscovery.bases[0], words: words)
        guard let device = try? await SunSpecDiscovery.discover(unit: 1, reader: reader) else { return [] }
        var findings: [String] = []
        if device.models.count > 64 { findings.append("SunSpec discovery returned \(device.models.count) models") }
        for model in device.models {
            if model.address < 0 || model.address + 2 > 65536 {
                findings.append("SunSpec model \(model.id) at \(model.address), outside the register space")
            }
            guard let profile = library.sunspec(model: model.id) else { continue }
            let placed = profile.located(at: model.address)
            guard let readout = try? await MeterReader(profile: placed).read(unit: 1, from: reader) else { continue }
            for (quantity, value) in readout.values where !value.isFinite {
                findings.append("SunSpec model \(model.id): \(quantity) decoded to \(value)")
            }
        }
        return findings
    }
}

/// The profile's planned reads answered from `words` in turn; a request past the end is refused.
func readout(_ profile: MeterProfile, _ words: [UInt16], _ what: String) async -> [String] {
    let reader = SequentialReader(words: words)
    guard let readout = try? await MeterReader(profile: profile).read(unit: 1, from: reader) else { return [] }
    var findings: [String] = []
    for (quantity, value) in readout.values where !value.isFinite {
        findings.append("\(what): \(quantity) decoded to \(value)")
    }
    let again = profile.decode(readout.blocks)
    if again != readout.values { findings.append("\(what): decoding the same blocks twice differs") }
    return findings
}

/// Answers each read with the next `count` words; refuses (illegal data address) once they run out.
final class SequentialReader: RegisterReader {
    private let state: Mutex<ArraySlice<UInt16>>

    init(words: [UInt16]) { state = Mutex(words[...]) }

    func readRegisters(unit: Int, space: RegisterField.Space, address: Int, count: Int) async throws(ModbusError) -> [UInt16] {
        let words: [UInt16]? = state.withLock { rest in
            guard rest.count >= count else { return nil }
            defer { rest = rest.dropFirst(count) }
            return Array(rest.prefix(count))
        }
        guard let words else { throw illegalAddress(address) }
        return words
    }
}

/// Holding registers `base…` hold `words`; anything else is refused (illegal data address).
struct ImageReader: RegisterReader {
    let base: Int
    let words: [UInt16]

    func readRegisters(unit: Int, space: RegisterField.Space, address: Int, count: Int) async throws(ModbusError) -> [UInt16] {
        guard space == .holding, count >= 0, address >= base, address - base + count <= words.count else { throw illegalAddress(address) }
        return Array(words[(address - base)..<(address - base + count)])
    }
}

/// libmodbus reports an exception answer as errno EMBXILADD (its base 112345678 plus the exception code).
func illegalAddress(_ address: Int) -> ModbusError {
    ModbusError(function: "modbus_read_registers", code: 112_345_678 + Int32(ModbusException.illegalDataAddress.rawValue), context: "address \(address)")
}

/// Runs `body` to completion from synchronous code (the libFuzzer callback is synchronous, and so is a
/// test that calls a target). The task prefers an executor on its own dispatch queue, so waiting here never
/// holds a thread of the cooperative pool that the task itself would need (a deadlock on a 2-core machine).
func blocking(_ body: @escaping @Sendable () async -> [String]) -> [String] {
    let result = Mutex<[String]>([])
    let done = DispatchSemaphore(value: 0)
    Task(executorPreference: QueueTaskExecutor.shared) {
        let findings = await body()
        result.withLock { $0 = findings }
        done.signal()
    }
    done.wait()
    return result.withLock { $0 }
}

/// A task executor on a dispatch queue of its own.
/// `@unchecked Sendable`: the only stored state is an immutable, thread-safe `DispatchQueue`.
final class QueueTaskExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = QueueTaskExecutor()
    private let queue = DispatchQueue(label: "metergate-fuzz", attributes: .concurrent)

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
