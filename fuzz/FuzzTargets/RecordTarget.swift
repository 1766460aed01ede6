import Signing

/// Bytes as `metergate verify` reads them: an archive of JWS or OCMF records, one per line, checked against
/// the test-vector keys; each line also through the JSON parser and the record reader on its own; the whole
/// input as a key file.
///
/// Promises checked: a JSON value the parser accepts writes out to bytes that parse to the same value (in
/// both the canonical and the ordered form); a record read from JSON writes back to the same record.
public struct RecordTarget: FuzzTarget {
    public let name = "verify"
    let verifier: RecordVerifier

    public init(repositoryRoot root: String) {
        verifier = RecordVerifier(keys: (try? KeySet.load(path: "\(root)/docs/test-vectors/keys.jwks.json")) ?? KeySet())
    }

    public func seeds(repositoryRoot root: String) -> [[UInt8]] {
        let vectors = "\(root)/docs/test-vectors"
        let records = FuzzTargets.files(in: vectors, suffix: ".txt") + FuzzTargets.files(in: vectors, suffix: ".json")
            + FuzzTargets.files(in: vectors, suffix: ".pem")
        // Each record's payload on its own too, so the JSON reader starts from real records.
        var payloads: [[UInt8]] = []
        for file in FuzzTargets.files(in: vectors, suffix: ".txt") {
            for line in file.split(separator: 0x0A) {
                if case .success(let v) = RecordVerifier.parseWithoutSignatureCheck(line) { payloads.append(v.record.canonicalBytes) }
            }
        }
        return records + payloads
    }

    public func run(_ input: [UInt8]) -> [String] {
        var findings: [String] = []
        var analyzer = ChainAnalyzer(inputStartsAtEpochStart: true)
        for (i, line) in input.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            analyzer.add(verifier.verify(line), line: i + 1)
            _ = RecordVerifier.parseWithoutSignatureCheck(line)
            _ = try? JWSRecord(line)
            _ = try? OCMFRecord(line)
            findings += json(Array(line))
        }
        let report = analyzer.report()
        _ = report.text
        _ = report.json
        _ = try? KeySet.parse(String(decoding: input, as: UTF8.self), source: "fuzz")
        if input.contains(0x0A) { findings += json(input) }
        return findings
    }

    /// The JSON parser and the record reader on `bytes`, with their round trips.
    func json(_ bytes: [UInt8]) -> [String] {
        guard let value = try? JSONValue.parse(bytes) else { return [] }
        var findings: [String] = []
        for (form, written) in [("canonical", value.canonicalBytes), ("ordered", value.orderedBytes)] {
            do {
                let again = try JSONValue.parse(written)
                if again.canonicalBytes != value.canonicalBytes {
                    findings.append("JSON \(form) form \(String(decoding: written, as: UTF8.self)) reads back as a different value")
                }
            } catch {
                findings.append("JSON \(form) form \(String(decoding: written, as: UTF8.self)) does not parse: \(error)")
            }
        }
        if let record = try? ReadingRecord(json: value) {
            do {
                let again = try ReadingRecord(payload: record.canonicalBytes)
                if again != record { findings.append("a record does not read back from its own payload bytes") }
            } catch {
                findings.append("a record's own payload bytes do not read back: \(error)")
            }
        }
        return findings
    }
}
