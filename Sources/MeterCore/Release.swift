/// The MeterGate release: what `metergate --version` prints and an OCMF record's `GV` field names.
public enum MeterGateRelease {
    public static let version = "0.1.0"
}
