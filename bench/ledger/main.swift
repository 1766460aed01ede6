// Ledger ingest rate: verified records stored per second (one durable transaction each, as the consumer
// does), next to the raw verification rate of the same records measured in the same run.
// Run: swift run -c release ledger-bench [COUNT]
import Foundation
import Ledger
import MeterCore
import Signing

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 5_000 : 5_000
let key = SigningKey.generate(.eddsa)
let signer = try RecordSigner(gateway: try GatewayID(validating: "bench"), meter: try MeterID(validating: "m1"), sourceID: "S1",
                              envelope: .jws, key: key, selfCheck: false)
var position = StreamPosition.first(epoch: "BENCH")
var envelopes: [[UInt8]] = []
var start: Int64 = 1_767_225_600_000
for i in 0..<count {
    let result = IntervalResult(meter: signer.meter, source: .modbus, startMillis: start, endMillis: start + 900_000,
                                importTotal: MilliwattHours(Int64(i) * 250_000), exportTotal: .zero, importDelta: MilliwattHours(250_000),
                                exportDelta: .zero, averagePowerWatts: 1000, peakPowerWatts: 1200, sampleCount: 900, quality: .measured)
    let signed = try signer.sign(result: result, position: position)
    position = StreamPosition(epoch: "BENCH", seq: position.seq + 1, prev: signed.hash, previousKeyID: signed.keyID)
    envelopes.append(signed.bytes)
    start += 900_000
}

let verifier = RecordVerifier(keys: KeySet([key.publicKey]))
let clock = ContinuousClock()
var verified: [VerifiedRecord] = []
let verifyTime = clock.measure {
    verified = envelopes.map { try! verifier.verify($0).get() }
}

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-bench-\(getpid())").path
try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: directory) }
let tariff = try TariffFile.parse("currency: EUR\nprecision: 4\nflat: 31.25\n", file: "flat.yaml")
let store = try await SQLiteLedgerStore.open(path: "\(directory)/ledger.db", tariff: tariff)
let storeStart = clock.now
for (v, bytes) in zip(verified, envelopes) { _ = try await store.add(v, envelope: bytes, receivedMillis: 0) }
let storeTime = clock.now - storeStart
let dupStart = clock.now
for (v, bytes) in zip(verified, envelopes) { _ = try await store.add(v, envelope: bytes, receivedMillis: 0) }
let dupTime = clock.now - dupStart

func rate(_ d: Duration) -> Double { Double(count) / (Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18) }
let v = rate(verifyTime), s = rate(storeTime), d = rate(dupTime)
print(String(format: "records: %d", count))
print(String(format: "verify (Ed25519 JWS):        %9.0f records/s", v))
print(String(format: "ledger store (new, durable): %9.0f records/s  = %.3f × verify", s, s / v))
print(String(format: "ledger store (duplicates):   %9.0f records/s  = %.3f × verify", d, d / v))
