/// What the gateway knew of its wall clock when it signed a record: synchronised (NTP, PTP), known not to be,
/// or not known. Signed in each record (`clock`), so settlement can tell intervals timed by a free-running clock.
public enum ClockState: String, Sendable, Hashable, CaseIterable, Codable {
    case synced
    case unsynced
    case unknown
}
