// Signing benchmark: signatures/s per envelope and algorithm, and verify records/s, each next to
// swift-crypto's raw rate for the same key type measured in the same run (so the ratios hold on any machine).
//
//   swift run -c release signing-bench [--seconds S] [--records N] [--write-records FILE] [--raw-verify-only]
//
// --write-records writes N JWS/EdDSA records and their key (FILE.jwk) so `metergate verify` can be timed
// end to end (bench/signing/run.sh does that).
import BenchSupport
import Crypto
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import MeterCore
import Signing

struct Options {
    var seconds = 1.0
    var records = 20_000
    var writeRecords: String?
    /// Only the raw Ed25519 verify rate, for benchmarks that measure it next to each of their runs.
    var rawVerifyOnly = false

    init(_ args: [String]) {
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--seconds": seconds = Double(args[i + 1]) ?? seconds; i += 1
            case "--records": records = Int(args[i + 1]) ?? records; i += 1
            case "--write-records": writeRecords = args[i + 1]; i += 1
            case "--raw-verify-only": rawVerifyOnly = true
            default: FileHandle.standardError.write(Data("unknown argument \(args[i])\n".utf8)); exit(2)
            }
            i += 1
        }
    }
}

/// Runs `body` once over `count` items on this thread; returns items per CPU-second.
func cpuThroughput(count: Int, _ body: () -> Void) -> Double {
    let start = threadCPUSeconds()
    body()
    return Double(count) / (threadCPUSeconds() - start)
}

/// Runs `body` once over `count` items (on any number of threads); returns items per wall-clock second.
func wallThroughput(count: Int, _ body: () -> Void) -> Double {
    let start = wallSeconds()
    body()
    return Double(count) / (wallSeconds() - start)
}

func interval(_ i: Int) -> IntervalResult {
    IntervalResult(meter: try! MeterID(validating: "main"), source: .modbus, startMillis: 1_736_935_200_000 + Int64(i) * 900_000,
                   endMillis: 1_736_936_100_000 + Int64(i) * 900_000, importTotal: MilliwattHours(1_000_000_000 + Int64(i) * 250_000),
                   exportTotal: .zero, importDelta: MilliwattHours(250_000), exportDelta: .zero,
                   averagePowerWatts: 1000, peakPowerWatts: 2200, sampleCount: 900, quality: .measured)
}

func makeStream(_ signer: RecordSigner, count: Int) throws -> [SignedRecord] {
    var position = StreamPosition.first(epoch: "bench")
    var out: [SignedRecord] = []
    out.reserveCapacity(count)
    for i in 0..<count {
        let signed = try signer.sign(result: interval(i), position: position)
        position = StreamPosition(epoch: "bench", seq: position.seq + 1, prev: signed.hash, previousKeyID: signed.keyID)
        out.append(signed)
    }
    return out
}

func format(_ v: Double) -> String { String(format: "%10.0f", v) }
func ratio(_ a: Double, _ b: Double) -> String { String(format: "%6.2f", a / b) }

let options = Options(Array(CommandLine.arguments.dropFirst()))
let gateway = try GatewayID(validating: "bench-gw"), meter = try MeterID(validating: "main")
let ed = SigningKey.generate(.eddsa), p256 = SigningKey.generate(.es256)
let cores = ProcessInfo.processInfo.activeProcessorCount

// A typical payload, for the raw rates.
let sample = try RecordSigner(gateway: gateway, meter: meter, sourceID: "SDM630-0012345", envelope: .jws, key: ed)
    .sign(result: interval(0), position: .first(epoch: "bench"))
let message = Array(sample.text.utf8.prefix(600))

// swift-crypto, raw.
let rawEdKey = Curve25519.Signing.PrivateKey(), rawP256Key = P256.Signing.PrivateKey()
if options.rawVerifyOnly {
    let edSig = try rawEdKey.signature(for: message)
    let rawEdVerify = rate(seconds: options.seconds) { _ = rawEdKey.publicKey.isValidSignature(edSig, for: message) }
    print("swift-crypto raw verify/CPU-s: Ed25519 \(format(rawEdVerify))")
    exit(0)
}
let rawEdSign = try rawSignRate(.ed25519, message: message, seconds: options.seconds)
let rawP256Sign = try rawSignRate(.p256, message: message, seconds: options.seconds)
let edSig = try rawEdKey.signature(for: message), p256Sig = try rawP256Key.signature(for: message)
let rawEdVerify = rate(seconds: options.seconds) { _ = rawEdKey.publicKey.isValidSignature(edSig, for: message) }
let rawP256Verify = rate(seconds: options.seconds) { _ = rawP256Key.publicKey.isValidSignature(p256Sig, for: message) }

print("MeterGate signing benchmark: \(cores) cores, \(options.records) records per verify run, ~\(options.seconds) CPU-s per signing rate")
print("Rates are per CPU-second of one thread (steady on a shared machine); N free cores give about N times.")
print("")
print("signing, one thread           records/CPU-s   swift-crypto raw sign/CPU-s   ratio")
for (name, envelope, key, raw, selfCheck) in [
    ("JWS EdDSA", RecordEnvelope.jws, ed, rawEdSign, false), ("JWS ES256", .jws, p256, rawP256Sign, false), ("OCMF ES256", .ocmf, p256, rawP256Sign, false),
    ("JWS EdDSA + self-check", .jws, ed, rawEdSign, true), ("JWS ES256 + self-check", .jws, p256, rawP256Sign, true), ("OCMF ES256 + self-check", .ocmf, p256, rawP256Sign, true),
] {
    let signer = try RecordSigner(gateway: gateway, meter: meter, sourceID: "SDM630-0012345", envelope: envelope, key: key, selfCheck: selfCheck)
    var position = StreamPosition.first(epoch: "bench")
    var i = 0
    let r = try rate(seconds: options.seconds) {
        let s = try signer.sign(result: interval(i), position: position)
        position = StreamPosition(epoch: "bench", seq: position.seq + 1, prev: s.hash)
        i += 1
    }
    print("\(name.padding(toLength: 26, withPad: " ", startingAt: 0))\(format(r))       \(format(raw))                   \(ratio(r, raw))")
}

print("")
var overheads: [String] = []
print("verify (signature + chain)    records/CPU-s   swift-crypto raw verify/CPU-s  ratio   | all \(cores) cores: records/s wall clock")
for (name, envelope, key, raw) in [("JWS EdDSA", RecordEnvelope.jws, ed, rawEdVerify), ("JWS ES256", .jws, p256, rawP256Verify), ("OCMF ES256", .ocmf, p256, rawP256Verify)] {
    let signer = try RecordSigner(gateway: gateway, meter: meter, sourceID: "SDM630-0012345", envelope: envelope, key: key, selfCheck: false)
    let records = try makeStream(signer, count: options.records)
    let lines = records.map { ArraySlice($0.bytes) }
    let verifier = RecordVerifier(keys: KeySet([key.publicKey]))
    var passed = true
    let single = cpuThroughput(count: lines.count) {
        var analyzer = ChainAnalyzer()
        for (n, line) in lines.enumerated() { analyzer.add(verifier.verify(line), line: n + 1) }
        passed = passed && analyzer.report().passed
    }
    _ = verifier.verify(batch: Array(lines.prefix(2000)))   // start the worker threads before timing
    let parallel = wallThroughput(count: lines.count) {
        var analyzer = ChainAnalyzer()
        for (n, result) in verifier.verify(batch: lines).enumerated() { analyzer.add(result, line: n + 1) }
        passed = passed && analyzer.report().passed
    }
    guard passed else { print("verification FAILED for \(name): benchmark invalid"); exit(1) }
    // What the verifier costs besides the signature check: reading envelope and record, hashing, chain analysis.
    let parseOnly = cpuThroughput(count: lines.count) {
        var analyzer = ChainAnalyzer()
        for (n, line) in lines.enumerated() { analyzer.add(RecordVerifier.parseWithoutSignatureCheck(line), line: n + 1) }
        _ = analyzer.report()
    }
    overheads.append("\(name.padding(toLength: 26, withPad: " ", startingAt: 0))\(format(parseOnly))")
    print("\(name.padding(toLength: 26, withPad: " ", startingAt: 0))\(format(single))       \(format(raw))                    \(ratio(single, raw))   | \(format(parallel))")
}
print("")
print("verify without signature checks (parse, hash, chain): records/CPU-s, one thread")
for line in overheads { print(line) }
print("")
print("swift-crypto raw sign/CPU-s:   Ed25519 \(format(rawEdSign)), P-256 \(format(rawP256Sign))")
print("swift-crypto raw verify/CPU-s: Ed25519 \(format(rawEdVerify)), P-256 \(format(rawP256Verify))")

if let path = options.writeRecords {
    let signer = try RecordSigner(gateway: gateway, meter: meter, sourceID: "SDM630-0012345", envelope: .jws, key: ed, selfCheck: false)
    let text = try makeStream(signer, count: options.records).map(\.text).joined(separator: "\n") + "\n"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    try ed.publicKey.jwkJSON.write(toFile: path + ".jwk", atomically: true, encoding: .utf8)
}
