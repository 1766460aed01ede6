import MeterCore
import Signing

/// Builds signed streams for tests: real keys, real signatures, positions chained as the outbox would.
struct StreamBuilder {
    var signer: RecordSigner
    var position: StreamPosition
    var startMillis: Int64 = 1_736_935_200_000
    var importTotal: Int64 = 1_234_560_000
    var sourceKind: SourceKind = .modbus
    var records: [SignedRecord] = []

    init(key: SigningKey, envelope: RecordEnvelope = .jws, meter: String = "main", epoch: String = "E1", sourceID: String = "SDM630-0012345") throws {
        signer = try RecordSigner(gateway: try GatewayID(validating: "gw-1"), meter: try MeterID(validating: meter), sourceID: sourceID,
                                  envelope: envelope, key: key)
        position = .first(epoch: epoch)
    }

    static func result(meter: String = "main", source: SourceKind = .modbus, start: Int64, importTotal: Int64, delta: Int64 = 250_000) throws -> IntervalResult {
        IntervalResult(meter: try MeterID(validating: meter), source: source, startMillis: start, endMillis: start + 900_000,
                       importTotal: MilliwattHours(importTotal), exportTotal: MilliwattHours(1_500), importDelta: MilliwattHours(delta),
                       exportDelta: .zero, averagePowerWatts: 1000.5, peakPowerWatts: 2200.25, sampleCount: 900, quality: .measured)
    }

    /// Signs the next interval and advances the position as the outbox would.
    @discardableResult
    mutating func next() throws -> SignedRecord {
        importTotal += 250_000
        let signed = try signer.sign(result: try Self.result(meter: signer.meter.rawValue, source: sourceKind, start: startMillis, importTotal: importTotal),
                                     position: position)
        startMillis += 900_000
        position = StreamPosition(epoch: position.epoch, seq: position.seq + 1, prev: signed.hash, previousKeyID: signed.keyID)
        records.append(signed)
        return signed
    }

    mutating func next(_ count: Int) throws {
        for _ in 0..<count { try next() }
    }

    /// Switches to a new key (rotation); the next record names the old key id.
    mutating func rotate(to key: SigningKey) throws {
        signer = try RecordSigner(gateway: signer.gateway, meter: signer.meter, sourceID: signer.sourceID, envelope: signer.envelope, key: key)
    }
}

/// Runs the library verifier over envelope lines, as `metergate verify` does.
func verifyLines(_ lines: [[UInt8]], keys: [VerifyingKey], fromStart: Bool = false) -> VerificationReport {
    let verifier = RecordVerifier(keys: KeySet(keys))
    var analyzer = ChainAnalyzer(inputStartsAtEpochStart: fromStart)
    for (i, line) in lines.enumerated() { analyzer.add(verifier.verify(line), line: i + 1) }
    return analyzer.report()
}

extension StreamBuilder {
    /// Signs the next record as the gateway does first after its store lost `seqs`: it continues from the
    /// high-water mark (`prev` is the hash of the last record handed out) and states the loss, signed.
    @discardableResult
    mutating func nextStatingLoss(_ seqs: ClosedRange<UInt64>) throws -> SignedRecord {
        position.storeLost = StoreLoss(seqs: seqs, cause: .damage)
        return try next()
    }
}
