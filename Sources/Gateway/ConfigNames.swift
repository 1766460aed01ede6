import Modbus

/// Words the config file uses for settings of other modules.
enum ParityName: String, CaseIterable {
    case none = "N", even = "E", odd = "O"
    var settings: SerialSettings.Parity {
        switch self {
        case .none: return .none
        case .even: return .even
        case .odd: return .odd
        }
    }
}

enum LogLevelName: String, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}
