import Foundation
import Ledger
import MeterCore
import Signing
import TestSupport

/// Builds one signed stream as the gateway would: real keys, real signatures, each record chained to the last.
struct SignedStream {
    var signer: RecordSigner
    var position: StreamPosition
    var startMillis: Int64
    var importTotal: Int64 = 1_000_000_000
    var exportTotal: Int64 = 0
    var records: [SignedRecord] = []

    init(key: SigningKey, gateway: String = "gw-1", meter: String = "main", epoch: String = "E1",
         envelope: RecordEnvelope = .jws, start: String = "2026-03-29T00:00:00Z") throws {
        signer = try RecordSigner(gateway: try GatewayID(validating: gateway), meter: try MeterID(validating: meter), sourceID: "SDM630-0012345",
                                  envelope: envelope, key: key)
        position = .first(epoch: epoch)
        startMillis = millis(start)
    }

    /// Signs the next interval with `delta` mWh imported and advances the position as the outbox would.
    @discardableResult
    mutating func next(delta: Int64 = 250_000, export: Int64 = 0, source: SourceStatement = SourceStatement()) throws -> SignedRecord {
        importTotal += delta
        exportTotal += export
        let result = IntervalResult(meter: signer.meter, source: .modbus, startMillis: startMillis, endMillis: startMillis + 900_000,
                                    importTotal: MilliwattHours(importTotal), exportTotal: MilliwattHours(exportTotal),
                                    importDelta: MilliwattHours(delta), exportDelta: MilliwattHours(export),
                                    averagePowerWatts: Double(delta) * 4 / 1000, peakPowerWatts: 1500, sampleCount: 900, quality: .measured)
        let signed = try signer.sign(result: result, position: position, source: source)
        startMillis += 900_000
        position = StreamPosition(epoch: position.epoch, seq: position.seq + 1, prev: signed.hash, previousKeyID: signed.keyID)
        records.append(signed)
        return signed
    }

    mutating func next(_ count: Int) throws {
        for _ in 0..<count { try next() }
    }

    /// A different record for an already signed seq (a fork): same position, other energy.
    func fork(of seq: UInt64, delta: Int64 = 999_000) throws -> SignedRecord {
        let original = records[Int(seq - 1)].record
        let result = IntervalResult(meter: signer.meter, source: .modbus, startMillis: original.startMillis, endMillis: original.endMillis,
                                    importTotal: MilliwattHours(original.importTotal.rawValue + 1), exportTotal: .zero,
                                    importDelta: MilliwattHours(delta), exportDelta: .zero,
                                    averagePowerWatts: 1, peakPowerWatts: 1, sampleCount: 1, quality: .measured)
        return try signer.sign(result: result, position: StreamPosition(epoch: original.epoch, seq: seq, prev: original.prev, previousKeyID: original.previousKeyID))
    }
}

func verified(_ signed: SignedRecord, key: SigningKey) throws -> VerifiedRecord {
    try RecordVerifier(keys: KeySet([key.publicKey])).verify(signed.bytes).get()
}

/// Polls `condition` every 50 ms until it holds or `seconds` pass; the caller asserts on the result.
func eventually(_ seconds: Double = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}
