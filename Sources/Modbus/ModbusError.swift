internal import CModbus

/// A failed libmodbus call: the C function, the errno it left, and what it means.
public struct ModbusError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, in the terms a poller reacts to.
    public enum Kind: Hashable, Sendable {
        /// The device answered with a Modbus exception (function code | 0x80).
        case exception(ModbusException)
        /// No (complete) answer within the response timeout.
        case timeout
        /// The answer arrived but failed its CRC or framing checks.
        case badFrame
        /// The connection or serial port could not be opened or broke.
        case connection
        /// A bad argument or unsupported operation (a programming or config error).
        case invalidRequest
        /// Any other errno.
        case other
    }

    /// The libmodbus function that failed, e.g. `modbus_read_registers`.
    public let function: String
    /// The errno value libmodbus left (its own codes start at MODBUS_ENOBASE).
    public let code: Int32
    /// What the caller was doing, e.g. "unit 3, FC04 @30001 ×2" or "/dev/ttyUSB0".
    public let context: String

    public init(function: String, code: Int32, context: String = "") {
        self.function = function
        self.code = code
        self.context = context
    }

    /// The error libmodbus reports for an exception answer (`MODBUS_ENOBASE` + the exception code).
    public static func answered(_ exception: ModbusException, function: String, context: String = "") -> ModbusError {
        ModbusError(function: function, code: CModbus_ENOBASE() + Int32(exception.rawValue), context: context)
    }

    /// The error libmodbus reports when no answer came within the response timeout (`ETIMEDOUT`).
    public static func timedOut(function: String, context: String = "") -> ModbusError {
        ModbusError(function: function, code: ETIMEDOUT, context: context)
    }

    /// The error libmodbus reports for an answer whose framing or length does not match the request (`EMBBADDATA`).
    public static func damagedFrame(function: String, context: String = "") -> ModbusError {
        ModbusError(function: function, code: CModbus_EMBBADDATA(), context: context)
    }

    public var kind: Kind {
        let base = CModbus_ENOBASE()
        if code > base && code < base + 64 {
            if let exception = ModbusException(rawValue: UInt8(code - base)) { return .exception(exception) }
        }
        switch code {
        case ETIMEDOUT: return .timeout
        case CModbus_EMBBADCRC(), CModbus_EMBBADDATA(), CModbus_EMBBADSLAVE(), CModbus_EMBBADEXC(), CModbus_EMBUNKEXC():
            return .badFrame
        case ECONNREFUSED, ECONNRESET, EPIPE, ENOENT, EACCES, EBUSY, EHOSTUNREACH, ENETUNREACH, EBADF, EIO, ENODEV, ENXIO:
            return .connection
        case EINVAL, CModbus_EMBMDATA(), ENOPROTOOPT: return .invalidRequest
        default: return .other
        }
    }

    /// libmodbus's text for the code. The corresponding C function is `modbus_strerror`.
    public var message: String { String(cString: modbus_strerror(code)) }

    public var description: String {
        let suffix = context.isEmpty ? "" : " (\(context))"
        return "\(function) failed: \(message) [errno \(code)]\(suffix)"
    }
}

/// Exception codes a Modbus device can answer with.
public enum ModbusException: UInt8, Sendable, Hashable, CustomStringConvertible {
    case illegalFunction = 1
    case illegalDataAddress = 2
    case illegalDataValue = 3
    case serverDeviceFailure = 4
    case acknowledge = 5
    case serverDeviceBusy = 6
    case negativeAcknowledge = 7
    case memoryParityError = 8
    case gatewayPathUnavailable = 10
    case gatewayTargetFailedToRespond = 11

    public var description: String {
        switch self {
        case .illegalFunction: return "illegal function"
        case .illegalDataAddress: return "illegal data address"
        case .illegalDataValue: return "illegal data value"
        case .serverDeviceFailure: return "server device failure"
        case .acknowledge: return "acknowledge"
        case .serverDeviceBusy: return "server device busy"
        case .negativeAcknowledge: return "negative acknowledge"
        case .memoryParityError: return "memory parity error"
        case .gatewayPathUnavailable: return "gateway path unavailable"
        case .gatewayTargetFailedToRespond: return "gateway target failed to respond"
        }
    }
}

/// The version of the libmodbus this binary was built against. The corresponding C macro is `LIBMODBUS_VERSION_STRING`.
public var libmodbusVersion: String { String(cString: CModbus_version_string()) }
