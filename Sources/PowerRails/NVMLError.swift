/// A failed NVML call, or NVML not being there at all.
public struct NVMLError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `nvmlReturn_t` values that the gateway reacts to (nvml.h lines 1296-1327).
    public enum Code: Hashable, Sendable {
        case uninitialized, invalidArgument, notSupported, noPermission, notFound, insufficientSize
        case driverNotLoaded, functionNotFound, gpuIsLost, resetRequired, libraryVersionMismatch
        case other(Int32)

        public init(rawValue: Int32) {
            switch rawValue {
            case 1: self = .uninitialized
            case 2: self = .invalidArgument
            case 3: self = .notSupported
            case 4: self = .noPermission
            case 6: self = .notFound
            case 7: self = .insufficientSize
            case 9: self = .driverNotLoaded
            case 13: self = .functionNotFound
            case 15: self = .gpuIsLost
            case 16: self = .resetRequired
            case 18: self = .libraryVersionMismatch
            default: self = .other(rawValue)
            }
        }

        /// The `nvmlReturn_t` value.
        public var rawValue: Int32 {
            switch self {
            case .uninitialized: return 1
            case .invalidArgument: return 2
            case .notSupported: return 3
            case .noPermission: return 4
            case .notFound: return 6
            case .insufficientSize: return 7
            case .driverNotLoaded: return 9
            case .functionNotFound: return 13
            case .gpuIsLost: return 15
            case .resetRequired: return 16
            case .libraryVersionMismatch: return 18
            case .other(let value): return value
            }
        }
    }

    public enum Kind: Hashable, Sendable {
        /// `dlopen` failed: no NVIDIA driver on this machine (not an error for a gateway without GPUs).
        case libraryNotLoaded(path: String, reason: String)
        /// An NVML function returned an error.
        case call(function: String, code: Code, message: String)
    }

    public let kind: Kind
    /// The GPU concerned, by UUID, where there is one.
    public let uuid: String?

    public init(_ kind: Kind, uuid: String? = nil) {
        self.kind = kind
        self.uuid = uuid
    }

    /// The NVML return code, if an NVML function failed.
    public var code: Code? {
        if case .call(_, let code, _) = kind { return code }
        return nil
    }

    public var description: String {
        let gpu = uuid.map { " for GPU \($0)" } ?? ""
        switch kind {
        case .libraryNotLoaded(let path, let reason):
            return "cannot load \(path) (\(reason)): no NVIDIA driver, so no GPU rails"
        case .call(let function, let code, let message):
            var hint = ""
            switch code {
            case .gpuIsLost: hint = "; the GPU fell off the bus: it is marked offline and looked up again by UUID"
            case .functionNotFound: hint = "; the installed driver is older than this function"
            case .driverNotLoaded: hint = "; the NVIDIA kernel driver is not loaded"
            case .noPermission: hint = "; the service user may not query this GPU"
            default: break
            }
            return "\(function) failed\(gpu): \(message) [nvmlReturn \(code.rawValue)]\(hint)"
        }
    }
}
