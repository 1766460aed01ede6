/// How to reach a Modbus device or bus.
public enum ModbusTransport: Sendable, Hashable, CustomStringConvertible {
    /// Modbus TCP to `host:port`.
    case tcp(host: String, port: Int)
    /// Modbus RTU on a serial device (or a pseudo-terminal).
    case rtu(SerialSettings)

    public var description: String {
        switch self {
        case .tcp(let host, let port): return "tcp://\(host):\(port)"
        case .rtu(let s): return "rtu://\(s.device)?\(s.baud)-\(s.dataBits)\(s.parity.rawValue)\(s.stopBits)"
        }
    }
}

/// Serial line settings for Modbus RTU.
public struct SerialSettings: Sendable, Hashable {
    public enum Parity: Character, Sendable, Hashable {
        case none = "N", even = "E", odd = "O"
    }
    public var device: String
    public var baud: Int
    public var parity: Parity
    public var dataBits: Int
    public var stopBits: Int
    /// Put the UART in RS-485 mode (TIOCSRS485) where the board's driver supports it.
    public var rs485: Bool

    public init(device: String, baud: Int = 9600, parity: Parity = .none, dataBits: Int = 8, stopBits: Int = 1, rs485: Bool = false) {
        self.device = device
        self.baud = baud
        self.parity = parity
        self.dataBits = dataBits
        self.stopBits = stopBits
        self.rs485 = rs485
    }
}
