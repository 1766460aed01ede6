import CTimex
import MeterCore

/// The kernel's view of the wall clock, read with `adjtimex(2)` (modes 0: a read, allowed to any user).
public enum KernelClock {
    /// `synced` when the kernel's clock discipline is in sync (no `STA_UNSYNC`, not `TIME_ERROR`), `unsynced`
    /// when it says otherwise, `unknown` when the call fails. The corresponding C function is `adjtimex`.
    public static func state() -> ClockState {
        switch CTimex_synchronised() {
        case 1: return .synced
        case 0: return .unsynced
        default: return .unknown
        }
    }
}
