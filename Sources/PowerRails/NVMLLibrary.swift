#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// NVIDIA's management library, loaded at run time so that one binary runs with or without the driver.
///
/// Nothing links `libnvidia-ml`: `dlopen` finds it or the machine has no NVIDIA GPU. Functions are looked up
/// by their versioned names (`nvmlInit_v2`, `nvmlDeviceGetCount_v2`, `nvmlDeviceGetHandleByIndex_v2`), as
/// nvml.h maps them; the unversioned names are older ABI entry points. A missing optional function counts as
/// `FUNCTION_NOT_FOUND` for that metric only. GPUs are identified by UUID: index order is not stable.
///
/// Units: power and limits mW, energy mJ since the driver was last loaded (nvml.h 6470-6617).
///
/// `@unchecked Sendable` is safe: the library handle and function pointers are immutable after `init`, the
/// only mutable state (the handle cache) is inside a `Mutex`, and NVML itself is thread-safe (nvml.h line 44).
/// Calls can block in the driver: use it from a dedicated queue (`RailSampler`), not the cooperative pool.
public final class NVMLLibrary: @unchecked Sendable {
    public static let defaultPath = "libnvidia-ml.so.1"

    typealias ReturnFn = @convention(c) () -> Int32
    typealias CountFn = @convention(c) (UnsafeMutablePointer<UInt32>?) -> Int32
    typealias HandleByIndexFn = @convention(c) (UInt32, UnsafeMutablePointer<OpaquePointer?>?) -> Int32
    typealias HandleByUUIDFn = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<OpaquePointer?>?) -> Int32
    typealias StringFn = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, UInt32) -> Int32
    typealias UInt64Fn = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt64>?) -> Int32
    typealias UInt32Fn = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt32>?) -> Int32
    typealias FieldValuesFn = @convention(c) (OpaquePointer?, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias ErrorStringFn = @convention(c) (Int32) -> UnsafePointer<CChar>?
    typealias SystemStringFn = @convention(c) (UnsafeMutablePointer<CChar>?, UInt32) -> Int32

    private let library: UnsafeMutableRawPointer
    public let path: String
    private let shutdownFn: ReturnFn
    private let countFn: CountFn
    private let handleByIndexFn: HandleByIndexFn
    private let handleByUUIDFn: HandleByUUIDFn?
    private let uuidFn: StringFn
    private let nameFn: StringFn?
    private let energyFn: UInt64Fn?
    private let powerFn: UInt32Fn?
    private let limitFn: UInt32Fn?
    private let fieldValuesFn: FieldValuesFn?
    private let errorStringFn: ErrorStringFn?
    private let driverVersionFn: SystemStringFn?

    // Handles as bit patterns: `OpaquePointer` is not `Sendable`, the address is.
    private let handles = Mutex<[String: UInt]>([:])

    /// Loads NVML and initialises it. The corresponding C functions are `dlopen` and `nvmlInit_v2`.
    /// - Throws: `.libraryNotLoaded` when there is no driver; `.call` when `nvmlInit_v2` fails.
    public init(path: String = NVMLLibrary.defaultPath) throws(NVMLError) {
        guard let library = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            throw NVMLError(.libraryNotLoaded(path: path, reason: reason))
        }
        func symbol<T>(_ name: String, as type: T.Type) -> T? {
            dlsym(library, name).map { unsafeBitCast($0, to: type) }
        }
        guard let initFn = symbol("nvmlInit_v2", as: ReturnFn.self),
              let shutdownFn = symbol("nvmlShutdown", as: ReturnFn.self),
              let countFn = symbol("nvmlDeviceGetCount_v2", as: CountFn.self),
              let handleByIndexFn = symbol("nvmlDeviceGetHandleByIndex_v2", as: HandleByIndexFn.self),
              let uuidFn = symbol("nvmlDeviceGetUUID", as: StringFn.self)
        else {
            dlclose(library)
            throw NVMLError(.call(function: "dlsym", code: .functionNotFound,
                                  message: "\(path) lacks nvmlInit_v2, nvmlShutdown, nvmlDeviceGetCount_v2, nvmlDeviceGetHandleByIndex_v2 or nvmlDeviceGetUUID"))
        }
        // Initialise before the object is complete: a failure then never runs deinit's nvmlShutdown.
        let errorStringFn = symbol("nvmlErrorString", as: ErrorStringFn.self)
        let status = initFn()
        guard status == 0 else {
            let error = NVMLError(.call(function: "nvmlInit_v2", code: .init(rawValue: status), message: Self.message(status, errorStringFn)))
            dlclose(library)
            throw error
        }
        self.library = library
        self.path = path
        self.shutdownFn = shutdownFn
        self.countFn = countFn
        self.handleByIndexFn = handleByIndexFn
        self.uuidFn = uuidFn
        self.handleByUUIDFn = symbol("nvmlDeviceGetHandleByUUID", as: HandleByUUIDFn.self)
        self.nameFn = symbol("nvmlDeviceGetName", as: StringFn.self)
        self.energyFn = symbol("nvmlDeviceGetTotalEnergyConsumption", as: UInt64Fn.self)
        self.powerFn = symbol("nvmlDeviceGetPowerUsage", as: UInt32Fn.self)
        self.limitFn = symbol("nvmlDeviceGetPowerManagementLimit", as: UInt32Fn.self)
        self.fieldValuesFn = symbol("nvmlDeviceGetFieldValues", as: FieldValuesFn.self)
        self.errorStringFn = errorStringFn
        self.driverVersionFn = symbol("nvmlSystemGetDriverVersion", as: SystemStringFn.self)
    }

    deinit {
        _ = shutdownFn()
        dlclose(library)
    }

    /// A NUL-terminated C string in a buffer, as Swift text.
    private static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func message(_ status: Int32, _ errorString: ErrorStringFn?) -> String {
        errorString?(status).map { String(cString: $0) } ?? "nvmlReturn \(status)"
    }

    private func check(_ status: Int32, _ function: String, uuid: String? = nil) throws(NVMLError) {
        guard status == 0 else {
            throw NVMLError(.call(function: function, code: .init(rawValue: status), message: Self.message(status, errorStringFn)), uuid: uuid)
        }
    }

    /// The driver version, if the driver says. The corresponding C function is `nvmlSystemGetDriverVersion`.
    public var driverVersion: String? {
        guard let driverVersionFn else { return nil }
        var buffer = [CChar](repeating: 0, count: 96)
        guard driverVersionFn(&buffer, UInt32(buffer.count)) == 0 else { return nil }
        return Self.text(buffer)
    }

    /// Every GPU NVML sees, identified by UUID. A GPU whose handle cannot be had (no permission, lost) is
    /// listed with its error instead of being skipped silently.
    /// The corresponding C functions are `nvmlDeviceGetCount_v2` and `nvmlDeviceGetHandleByIndex_v2`.
    public func devices() throws(NVMLError) -> [NVMLDevice] {
        var count: UInt32 = 0
        try check(countFn(&count), "nvmlDeviceGetCount_v2")
        var devices: [NVMLDevice] = []
        for index in 0..<count {
            var handle: OpaquePointer?
            let status = handleByIndexFn(index, &handle)
            guard status == 0, let handle else {
                devices.append(NVMLDevice(index: Int(index), uuid: nil, name: nil, capabilities: [], powerLimitMilliwatts: nil,
                                          problem: NVMLError(.call(function: "nvmlDeviceGetHandleByIndex_v2", code: .init(rawValue: status),
                                                                   message: Self.message(status, errorStringFn)))))
                continue
            }
            do {
                let uuid = try string(uuidFn, handle, "nvmlDeviceGetUUID")
                handles.withLock { $0[uuid] = UInt(bitPattern: handle) }
                let name = nameFn.flatMap { try? string($0, handle, "nvmlDeviceGetName") }
                var capabilities: Set<NVMLDevice.Capability> = []
                var energy: UInt64 = 0
                if let energyFn, energyFn(handle, &energy) == 0 { capabilities.insert(.energyCounter) }
                var milliwatts: UInt32 = 0
                if let powerFn, powerFn(handle, &milliwatts) == 0 { capabilities.insert(.power) }
                if modulePower(handle) != nil { capabilities.insert(.modulePower) }
                var limit: UInt32 = 0
                let hasLimit = limitFn.map { $0(handle, &limit) == 0 } ?? false
                devices.append(NVMLDevice(index: Int(index), uuid: uuid, name: name, capabilities: capabilities,
                                          powerLimitMilliwatts: hasLimit ? limit : nil, problem: nil))
            } catch {
                devices.append(NVMLDevice(index: Int(index), uuid: nil, name: nil, capabilities: [], powerLimitMilliwatts: nil, problem: error))
            }
        }
        return devices
    }

    /// Reads one GPU's energy counter, power and module power, each where supported.
    ///
    /// - Throws: `GPU_IS_LOST` (the cached handle is dropped; the next read looks the UUID up again),
    ///   `NOT_FOUND` when no GPU has this UUID (any more), `NOT_SUPPORTED` when it reports neither energy nor power.
    /// The corresponding C functions are `nvmlDeviceGetTotalEnergyConsumption`, `nvmlDeviceGetPowerUsage` and
    /// `nvmlDeviceGetFieldValues`.
    public func read(uuid: String) throws(NVMLError) -> NVMLReading {
        let handle = try handle(uuid: uuid)
        var reading = NVMLReading(uuid: uuid, energyMillijoules: nil, powerMilliwatts: nil, modulePowerMilliwatts: nil)
        do {
            if let energyFn {
                var energy: UInt64 = 0
                let status = energyFn(handle, &energy)
                if status == 0 { reading.energyMillijoules = energy } else { try tolerateUnsupported(status, "nvmlDeviceGetTotalEnergyConsumption", uuid) }
            }
            if let powerFn {
                var milliwatts: UInt32 = 0
                let status = powerFn(handle, &milliwatts)
                if status == 0 { reading.powerMilliwatts = milliwatts } else { try tolerateUnsupported(status, "nvmlDeviceGetPowerUsage", uuid) }
            }
        } catch {
            if error.code == .gpuIsLost || error.code == .notFound { _ = handles.withLock { $0.removeValue(forKey: uuid) } }
            throw error
        }
        reading.modulePowerMilliwatts = modulePower(handle)
        guard reading.energyMillijoules != nil || reading.powerMilliwatts != nil else {
            throw NVMLError(.call(function: "nvmlDeviceGetPowerUsage", code: .notSupported, message: "neither energy nor power is supported"), uuid: uuid)
        }
        return reading
    }

    private func tolerateUnsupported(_ status: Int32, _ function: String, _ uuid: String) throws(NVMLError) {
        let code = NVMLError.Code(rawValue: status)
        if code == .notSupported || code == .functionNotFound { return }
        try check(status, function, uuid: uuid)
    }

    /// The handle of the GPU with this UUID. A cached handle is checked against the UUID first: after a driver
    /// reload or a GPU falling off the bus a stale handle could name another GPU, and its energy would be booked
    /// to the wrong meter.
    private func handle(uuid: String) throws(NVMLError) -> OpaquePointer {
        if let cached = handles.withLock({ $0[uuid] }).flatMap({ OpaquePointer(bitPattern: $0) }) {
            if (try? string(uuidFn, cached, "nvmlDeviceGetUUID")) == uuid { return cached }
            _ = handles.withLock { $0.removeValue(forKey: uuid) }
        }
        guard let handleByUUIDFn else {
            // Old driver without lookup by UUID: enumerate.
            _ = try devices()
            if let cached = handles.withLock({ $0[uuid] }).flatMap({ OpaquePointer(bitPattern: $0) }) { return cached }
            throw NVMLError(.call(function: "nvmlDeviceGetHandleByIndex_v2", code: .notFound, message: "no GPU with this UUID"), uuid: uuid)
        }
        var handle: OpaquePointer?
        try check(uuid.withCString { handleByUUIDFn($0, &handle) }, "nvmlDeviceGetHandleByUUID", uuid: uuid)
        guard let handle else {
            throw NVMLError(.call(function: "nvmlDeviceGetHandleByUUID", code: .notFound, message: "no handle"), uuid: uuid)
        }
        handles.withLock { $0[uuid] = UInt(bitPattern: handle) }
        return handle
    }

    private func string(_ fn: StringFn, _ handle: OpaquePointer, _ function: String) throws(NVMLError) -> String {
        var buffer = [CChar](repeating: 0, count: 96) // NVML_DEVICE_UUID_V2_BUFFER_SIZE
        try check(fn(handle, &buffer, UInt32(buffer.count)), function)
        return Self.text(buffer)
    }

    /// Module power (GPU + Grace CPU + memory on Grace Hopper) through the field-value API: field
    /// `NVML_FI_DEV_POWER_INSTANT` (186) with `scopeId = NVML_POWER_SCOPE_MODULE` (1). Nil where unsupported.
    ///
    /// `nvmlFieldValue_t` is laid out by hand (nvml.h 3010-3019): fieldId u32 @0, scopeId u32 @4, timestamp i64 @8,
    /// latencyUsec i64 @16, valueType i32 @24, nvmlReturn i32 @28, value (8-byte union) @32; 40 bytes. The fake
    /// NVML in the tests is compiled against a C declaration of the struct, which checks these offsets.
    private func modulePower(_ handle: OpaquePointer) -> UInt32? {
        guard let fieldValuesFn else { return nil }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 40, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 40)
        buffer.storeBytes(of: UInt32(186), toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: UInt32(1), toByteOffset: 4, as: UInt32.self)
        guard fieldValuesFn(handle, 1, buffer) == 0, buffer.load(fromByteOffset: 28, as: Int32.self) == 0 else { return nil }
        // Switch on the value type; do not assume it (nvml.h 648-674).
        switch buffer.load(fromByteOffset: 24, as: Int32.self) {
        case 0: return UInt32(exactly: buffer.load(fromByteOffset: 32, as: Double.self).rounded())
        case 1: return buffer.load(fromByteOffset: 32, as: UInt32.self)
        case 2, 3: return UInt32(exactly: buffer.load(fromByteOffset: 32, as: UInt64.self))
        case 4: return UInt32(exactly: buffer.load(fromByteOffset: 32, as: Int64.self))
        case 5: return UInt32(exactly: buffer.load(fromByteOffset: 32, as: Int32.self))
        case 6: return UInt32(buffer.load(fromByteOffset: 32, as: UInt16.self))
        default: return nil
        }
    }
}

/// One GPU as NVML enumerated it.
public struct NVMLDevice: Sendable, Hashable {
    public enum Capability: String, Sendable, Hashable, CaseIterable {
        /// `nvmlDeviceGetTotalEnergyConsumption` works (Volta and newer): account as a counter.
        case energyCounter
        /// `nvmlDeviceGetPowerUsage` works: integrate it where there is no counter.
        case power
        /// Module-scope power (Grace Hopper): the energy counter then covers the CPU too.
        case modulePower
    }

    /// The index at enumeration; informational only, never an identity.
    public var index: Int
    public var uuid: String?
    public var name: String?
    public var capabilities: Set<Capability>
    public var powerLimitMilliwatts: UInt32?
    /// Why this GPU cannot be used, when it cannot.
    public var problem: NVMLError?
}

/// One reading of one GPU.
public struct NVMLReading: Sendable, Hashable {
    public var uuid: String
    /// mJ since the driver was last loaded: it restarts near zero after a driver reload or GPU reset.
    public var energyMillijoules: UInt64?
    public var powerMilliwatts: UInt32?
    public var modulePowerMilliwatts: UInt32?

    public init(uuid: String, energyMillijoules: UInt64?, powerMilliwatts: UInt32?, modulePowerMilliwatts: UInt32?) {
        self.uuid = uuid
        self.energyMillijoules = energyMillijoules
        self.powerMilliwatts = powerMilliwatts
        self.modulePowerMilliwatts = modulePowerMilliwatts
    }
}
