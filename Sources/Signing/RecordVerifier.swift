import Crypto
import Dispatch
import Foundation
import MeterCore

/// A record whose signature verified.
public struct VerifiedRecord: Sendable, Hashable {
    public var record: ReadingRecord
    /// SHA-256 of the signed payload bytes (what the next record's `prev` carries).
    public var hash: [UInt8]
    public var envelope: RecordEnvelope
}

/// Why one record failed.
public struct RecordFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// Not a readable JWS or OCMF MeterGate record.
        case malformed
        /// Signed by a key id the verifier was not given.
        case unknownKey = "unknown key"
        /// The signature does not match the bytes, or the envelope disagrees with the signed record.
        case tampered
    }
    public var kind: Kind
    public var reason: String
    /// The record as it claims to be, when its payload could be read (so the failure can be charged to a stream).
    public var claimed: ReadingRecord?

    public var description: String { "\(kind.rawValue): \(reason)" }
}

/// Verifies single records (JWS or OCMF, one line each) against a trust store (each key for its gateway) and
/// keys given for every gateway. Pure and `Sendable`, so records can be checked on several threads at once.
public struct RecordVerifier: Sendable {
    /// Keys trusted for every gateway (`--key`).
    public let keys: KeySet
    /// Keys trusted per gateway (`--trust`).
    public let trust: TrustStore

    public init(keys: KeySet) { self.init(trust: TrustStore(), keys: keys) }

    public init(trust: TrustStore, keys: KeySet = KeySet()) {
        self.trust = trust
        self.keys = keys
    }

    /// The key that may verify `record` signed under `keyID`, or why none may.
    func key(_ keyID: String, for record: ReadingRecord) -> Result<VerifyingKey, RecordFailure> {
        if let key = keys[keyID] { return .success(key) }
        let gateway = record.gateway.rawValue
        if let entry = trust.trusted(keyID: keyID, gateway: gateway) {
            if let limit = entry.notAfterMillis, record.endMillis > limit {
                return .failure(RecordFailure(kind: .unknownKey, reason: "key id \(keyID) is trusted for gateway \(gateway) only for intervals ending by \(TrustStore.formatTime(limit))", claimed: record))
            }
            return .success(entry.key)
        }
        let elsewhere = trust.gateways.filter { $0.value.contains { $0.key.keyID == keyID } }.keys.sorted()
        let reason = elsewhere.isEmpty
            ? "key id \(keyID) is not trusted for gateway \(gateway)"
            : "key id \(keyID) is trusted for gateway \(elsewhere.joined(separator: ", ")), not for \(gateway)"
        return .failure(RecordFailure(kind: .unknownKey, reason: reason, claimed: record))
    }

    /// Verifies one envelope (no trailing newline). Leading and trailing ASCII whitespace is ignored.
    public func verify(_ line: some Collection<UInt8>) -> Result<VerifiedRecord, RecordFailure> {
        var bytes = ArraySlice(line)
        // A trailing newline (a record published with one, a line from a file) is whitespace too.
        while let f = bytes.first, f == 0x20 || f == 0x09 || f == 0x0D || f == 0x0A { bytes = bytes.dropFirst() }
        while let l = bytes.last, l == 0x20 || l == 0x09 || l == 0x0D || l == 0x0A { bytes = bytes.dropLast() }
        if bytes.starts(with: Array("OCMF|".utf8)) { return verifyOCMF(bytes) }
        return verifyJWS(bytes)
    }

    func verifyJWS(_ bytes: ArraySlice<UInt8>) -> Result<VerifiedRecord, RecordFailure> {
        let jws: JWSRecord
        do { jws = try JWSRecord(bytes) } catch { return .failure(RecordFailure(kind: .malformed, reason: error.description)) }
        let record: ReadingRecord
        do { record = try ReadingRecord(payload: jws.payloadBytes) } catch {
            return .failure(RecordFailure(kind: .malformed, reason: error.description))
        }
        let key: VerifyingKey
        switch self.key(jws.keyID, for: record) {
        case .success(let found): key = found
        case .failure(let failure): return .failure(failure)
        }
        guard jws.isValid(with: key) else {
            return .failure(RecordFailure(kind: .tampered, reason: "JWS signature does not verify with key \(jws.keyID)", claimed: record))
        }
        guard record.keyID == jws.keyID else {
            return .failure(RecordFailure(kind: .tampered, reason: "header kid \(jws.keyID) differs from the record's kid \(record.keyID)", claimed: record))
        }
        return .success(VerifiedRecord(record: record, hash: Array(SHA256.hash(data: jws.payloadBytes)), envelope: .jws))
    }

    func verifyOCMF(_ bytes: ArraySlice<UInt8>) -> Result<VerifiedRecord, RecordFailure> {
        let ocmf: OCMFRecord
        do { ocmf = try OCMFRecord(bytes) } catch { return .failure(RecordFailure(kind: .malformed, reason: error.description)) }
        guard let zm = ocmf.payload["ZM"] else {
            return .failure(RecordFailure(kind: .malformed, reason: "OCMF payload has no ZM member: not a MeterGate record"))
        }
        let record: ReadingRecord
        do { record = try ReadingRecord(json: zm) } catch {
            return .failure(RecordFailure(kind: .malformed, reason: "OCMF ZM: \(error)"))
        }
        let key: VerifyingKey
        switch self.key(record.keyID, for: record) {
        case .success(let found): key = found
        case .failure(let failure): return .failure(failure)
        }
        guard ocmf.isValid(with: key) else {
            return .failure(RecordFailure(kind: .tampered, reason: "OCMF signature does not verify with key \(record.keyID)", claimed: record))
        }
        // The signature covers both, but a settlement system reading only the OCMF fields must see the same numbers.
        if let mismatch = Self.ocmfMismatch(ocmf.payload, record) {
            return .failure(RecordFailure(kind: .tampered, reason: "OCMF \(mismatch) disagrees with the signed ZM record", claimed: record))
        }
        return .success(VerifiedRecord(record: record, hash: Array(SHA256.hash(data: ocmf.payloadBytes)), envelope: .ocmf))
    }

    static func ocmfMismatch(_ payload: JSONValue, _ record: ReadingRecord) -> String? {
        if payload["PG"]?.stringValue != "F\(record.seq)" { return "PG" }
        if payload["GS"]?.stringValue != record.gateway.rawValue { return "GS" }
        if payload["MS"]?.stringValue != record.sourceID { return "MS" }
        if payload["ZP"]?.stringValue != record.prev.hexString { return "ZP" }
        guard case .array(let readings)? = payload["RD"] else { return "RD" }
        for reading in readings {
            guard case .number(let value)? = reading["RV"], let obis = reading["RI"]?.stringValue else { return "RD" }
            let expected: MilliwattHours? =
                obis == OCMFMapping.importOBIS ? record.importTotal : obis == OCMFMapping.exportOBIS ? record.exportTotal : nil
            if let expected, value != OCMFFormat.decimal(expected.rawValue, scale: 6) { return "RV of \(obis)" }
        }
        return nil
    }
}

extension RecordVerifier {
    /// Verifies many records on all cores: signature checks are independent, so the batch is split into
    /// contiguous runs, one per worker. Results come back in input order.
    public func verify(batch lines: [ArraySlice<UInt8>]) -> [Result<VerifiedRecord, RecordFailure>] {
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, lines.count / 64))
        if workers == 1 { return lines.map { verify($0) } }
        var results = [Result<VerifiedRecord, RecordFailure>?](repeating: nil, count: lines.count)
        results.withUnsafeMutableBufferPointer { buffer in
            // Safe: each worker writes only the indices of its own run, and concurrentPerform returns
            // only after every worker has finished.
            nonisolated(unsafe) let out = buffer
            let per = (lines.count + workers - 1) / workers
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let start = w * per
                let end = min(lines.count, start + per)
                guard start < end else { return }
                for i in start..<end { out[i] = verify(lines[i]) }
            }
        }
        return results.map { $0! }
    }
}

extension RecordVerifier {
    /// Reads an envelope and its record and hashes the payload, but checks no signature. Only for
    /// measuring what verification costs besides the signature (bench/signing); never for settlement.
    public static func parseWithoutSignatureCheck(_ line: some Collection<UInt8>) -> Result<VerifiedRecord, RecordFailure> {
        let bytes = Array(line)
        do {
            if bytes.starts(with: Array("OCMF|".utf8)) {
                let ocmf = try OCMFRecord(bytes)
                guard let zm = ocmf.payload["ZM"] else { return .failure(RecordFailure(kind: .malformed, reason: "no ZM")) }
                return .success(VerifiedRecord(record: try ReadingRecord(json: zm), hash: Array(SHA256.hash(data: ocmf.payloadBytes)), envelope: .ocmf))
            }
            let jws = try JWSRecord(bytes)
            return .success(VerifiedRecord(record: try ReadingRecord(payload: jws.payloadBytes), hash: Array(SHA256.hash(data: jws.payloadBytes)), envelope: .jws))
        } catch {
            return .failure(RecordFailure(kind: .malformed, reason: "\(error)"))
        }
    }
}
