import Crypto
public import MeterCore

/// The envelope a meter's records travel in.
public enum RecordEnvelope: String, Sendable, Hashable, CaseIterable {
    /// JWS compact serialization; EdDSA or ES256 by the key.
    case jws
    /// `OCMF|payload|signature`, ECDSA-secp256r1-SHA256 with a DER signature; needs a P-256 key.
    case ocmf
}

/// The options of the OCMF rendering.
public struct OCMFOptions: Sendable, Hashable {
    /// `GI`: what signs the records.
    public var gatewayIdentification: String
    /// `GV`: the software version.
    public var gatewayVersion: String
    /// The status letter after each `TM`. Use `.synchronized` only when the clock is known to be synchronised.
    public var timeStatus: OCMFTimeStatus

    public init(gatewayIdentification: String = "MeterGate", gatewayVersion: String = MeterGateRelease.version, timeStatus: OCMFTimeStatus = .informative) {
        self.gatewayIdentification = gatewayIdentification
        self.gatewayVersion = gatewayVersion
        self.timeStatus = timeStatus
    }
}

/// A signed record, ready for the outbox.
public struct SignedRecord: Sendable, Hashable {
    /// The envelope text (one line, no newline): exactly what is stored and published.
    public var bytes: [UInt8]
    /// SHA-256 of the signed payload bytes: what the next record's `prev` must carry.
    public var hash: [UInt8]
    /// The key id that signed it (the outbox keeps it for ``StreamPosition/previousKeyID``).
    public var keyID: String
    public var record: ReadingRecord

    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// What one record says about its source beyond the signer's fixed ``RecordSigner/sourceID``: the meter that
/// answered (its identity, and where that comes from) and, once, that the meter was replaced.
public struct SourceStatement: Sendable, Hashable {
    /// The record's `source.id`; nil: the signer's.
    public var id: String?
    public var identity: SourceIdentityOrigin?
    public var replacement: MeterReplacement?

    public init(id: String? = nil, identity: SourceIdentityOrigin? = nil, replacement: MeterReplacement? = nil) {
        self.id = id
        self.identity = identity
        self.replacement = replacement
    }
}

/// Why a record could not be signed. Nothing is signed when this is thrown.
public enum SigningError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The input does not make a valid record.
    case invalidInput(RecordError)
    /// The interval result belongs to another meter than this signer's.
    case wrongMeter(expected: MeterID, found: MeterID)
    /// OCMF can carry only ECDSA P-256 signatures.
    case ocmfNeedsP256(meter: MeterID, algorithm: SigningAlgorithm)
    /// A value OCMF cannot carry (a `|`, or non-ASCII text, which OCMF verifiers read with a platform charset).
    case notOCMFSafe(field: String, value: String)
    /// swift-crypto refused to sign.
    case crypto(String)

    public var description: String {
        switch self {
        case .invalidInput(let e): return "cannot sign: \(e)"
        case .wrongMeter(let expected, let found): return "signer for meter \(expected) was given a result of meter \(found)"
        case .ocmfNeedsP256(let meter, let algorithm):
            return "meter \(meter) uses the OCMF envelope, which needs an ES256 (P-256) key; the signing key is \(algorithm.rawValue). "
                + "Fix: create one with `metergate keygen --algorithm ES256`, or use the jws envelope"
        case .notOCMFSafe(let field, let value):
            return "\(field) '\(value)' cannot go into an OCMF record: it must be printable ASCII without '|'"
        case .crypto(let why): return "signing failed: \(why)"
        }
    }
}

/// Turns accounting results of one meter stream into signed, chained records. Pure and `Sendable`: it holds
/// only immutable values, and the stream position comes from the caller (the outbox, inside its append
/// transaction).
public struct RecordSigner: Sendable {
    public let gateway: GatewayID
    public let meter: MeterID
    public let sourceID: String
    public let envelope: RecordEnvelope
    public let key: SigningKey
    public let ocmf: OCMFOptions
    /// The key id of ``key``, computed once.
    public let keyID: String
    /// Whether each signature is checked with the public key before the record is released. A faulty
    /// signature (a hardware fault or bit flip while signing) is then an error rather than a record that
    /// settlement would reject, and a fault never leaves the gateway. On by default; it roughly doubles the
    /// cost of signing, which is small next to one record per meter and interval.
    public let selfCheck: Bool
    let verifyingKey: VerifyingKey
    /// `BASE64URL(header).` of this signer's JWS records, made once.
    let jwsPrefix: [UInt8]

    /// - Parameters:
    ///   - sourceID: the physical identity of the source: a meter serial number, a GPU UUID, a sysfs path.
    ///     OCMF puts it in `MS`.
    /// - Throws: ``SigningError/ocmfNeedsP256(meter:algorithm:)`` or ``SigningError/notOCMFSafe(field:value:)``
    ///   when this meter's records cannot be OCMF.
    public init(gateway: GatewayID, meter: MeterID, sourceID: String, envelope: RecordEnvelope, key: SigningKey,
                ocmf: OCMFOptions = OCMFOptions(), selfCheck: Bool = true) throws(SigningError) {
        self.gateway = gateway
        self.meter = meter
        self.sourceID = sourceID
        self.envelope = envelope
        self.key = key
        self.ocmf = ocmf
        self.verifyingKey = key.publicKey
        self.keyID = verifyingKey.keyID
        self.selfCheck = selfCheck
        self.jwsPrefix = JWSRecord.signingInputPrefix(algorithm: key.algorithm, keyID: keyID)
        if envelope == .ocmf {
            guard key.algorithm == .es256 else { throw .ocmfNeedsP256(meter: meter, algorithm: key.algorithm) }
            for (field, value) in [("gateway id", gateway.rawValue), ("meter id", meter.rawValue), ("source id", sourceID),
                                   ("GI", ocmf.gatewayIdentification), ("GV", ocmf.gatewayVersion)] {
                guard value.utf8.allSatisfy({ (0x20...0x7E).contains($0) && $0 != UInt8(ascii: "|") }) else {
                    throw .notOCMFSafe(field: field, value: value)
                }
            }
            guard !sourceID.isEmpty else { throw .notOCMFSafe(field: "source id (OCMF MS)", value: sourceID) }
        }
    }

    /// Builds the record for `result` at `position`, signs it and returns the envelope and its chain hash.
    /// `clock`: the gateway's clock state to sign with the record (nil: the member is left out).
    /// `source`: the meter that answered, when it is not the signer's fixed ``sourceID``, and a replacement statement.
    public func sign(result: IntervalResult, position: StreamPosition, clock: ClockState? = nil,
                     source: SourceStatement = SourceStatement()) throws(SigningError) -> SignedRecord {
        guard result.meter == meter else { throw .wrongMeter(expected: meter, found: result.meter) }
        let record = try makeRecord(result: result, position: position, clock: clock, source: source)
        let payload = payloadBytes(for: record)
        let envelopeBytes: [UInt8]
        do {
            switch envelope {
            case .jws:
                envelopeBytes = try JWSRecord.sign(payload: payload, with: key, prefix: jwsPrefix)
            case .ocmf:
                guard let der = try key.signDER(payload) else { throw SigningError.ocmfNeedsP256(meter: meter, algorithm: key.algorithm) }
                envelopeBytes = OCMFRecord.text(payload: payload, derSignature: der)
            }
        } catch let error as SigningError {
            throw error
        } catch {
            throw .crypto("\(error)")
        }
        if selfCheck {
            let valid: Bool
            switch envelope {
            case .jws: valid = (try? JWSRecord(envelopeBytes))?.isValid(with: verifyingKey) == true
            case .ocmf: valid = (try? OCMFRecord(envelopeBytes))?.isValid(with: verifyingKey) == true
            }
            guard valid else { throw .crypto("the new signature of \(meter) seq \(position.seq) does not verify; nothing was released") }
        }
        return SignedRecord(bytes: envelopeBytes, hash: Array(SHA256.hash(data: payload)), keyID: keyID, record: record)
    }

    func makeRecord(result: IntervalResult, position: StreamPosition, clock: ClockState? = nil,
                    source: SourceStatement = SourceStatement()) throws(SigningError) -> ReadingRecord {
        let recordSourceID = source.id ?? sourceID
        if envelope == .ocmf, source.id != nil, recordSourceID.isEmpty || !recordSourceID.utf8.allSatisfy({ (0x20...0x7E).contains($0) && $0 != UInt8(ascii: "|") }) {
            throw .notOCMFSafe(field: "source id (OCMF MS)", value: recordSourceID)
        }
        func milliwatts(_ watts: Double, _ field: String) throws(SigningError) -> Int64 {
            let mw = (watts * 1000).rounded(.toNearestOrAwayFromZero)
            guard mw.isFinite else { throw .invalidInput(.invalid(field: field, reason: "power \(watts) W is not a finite number")) }
            guard abs(mw) < 9.0e18 else {
                throw .invalidInput(.invalid(field: field, reason: "power \(watts) W does not fit the record (at most 9.2e15 W as 64-bit mW); refused"))
            }
            return Int64(mw)
        }
        let previousKeyID = position.previousKeyID.flatMap { $0 == keyID ? nil : $0 }
        let record = ReadingRecord(
            gateway: gateway, meter: meter, sourceKind: result.source, sourceID: recordSourceID, epoch: position.epoch,
            seq: position.seq, startMillis: result.startMillis, endMillis: result.endMillis,
            importTotal: result.importTotal, exportTotal: result.exportTotal,
            importDelta: result.importDelta, exportDelta: result.exportDelta,
            averageMilliwatts: try milliwatts(result.averagePowerWatts, "avg_mw"),
            peakMilliwatts: try milliwatts(result.peakPowerWatts, "peak_mw"),
            sampleCount: Int64(result.sampleCount), quality: result.quality, prev: position.prev,
            keyID: keyID, previousKeyID: previousKeyID, storeLost: position.storeLost, clock: clock,
            sourceIdentity: source.identity, replacement: source.replacement)
        do { try record.validate() } catch { throw .invalidInput(error) }
        return record
    }

    /// The signed payload bytes of `record` in this signer's envelope.
    func payloadBytes(for record: ReadingRecord) -> [UInt8] {
        switch envelope {
        case .jws: return record.canonicalBytes
        case .ocmf: return OCMFMapping.payload(for: record, options: ocmf).bytes
        }
    }
}

/// How a ``ReadingRecord`` is rendered as OCMF: standard fields for OCMF verifiers; the chain link in the
/// vendor field `ZP` (SHA-256 of the previous payload, the usual OCMF convention); and the whole record in
/// the vendor field `ZM` for MeterGate's stream checks. Vendor fields are signed and ignored by OCMF verifiers.
public enum OCMFMapping {
    /// OBIS of cumulative imported active energy.
    public static let importOBIS = "01-00:01.08.00*FF"
    /// OBIS of cumulative exported active energy.
    public static let exportOBIS = "01-00:02.08.00*FF"

    public static func payload(for record: ReadingRecord, options: OCMFOptions) -> OCMFPayload {
        // The time status follows the signed clock state: S (synchronised) and U (not) as OCMF defines them.
        let timeStatus: OCMFTimeStatus
        switch record.clock {
        case .synced: timeStatus = .synchronized
        case .unsynced: timeStatus = .unknown
        case .unknown, nil: timeStatus = options.timeStatus
        }
        let time = OCMFFormat.time(epochMillis: record.endMillis, status: timeStatus)
        // OCMF meter status: G only for counted energy; S (substitute value) for estimates; F (read error) for gaps.
        let status: String
        switch record.quality {
        case .measured, .interpolated: status = "G"
        case .estimated: status = "S"
        case .gap: status = "F"
        }
        return OCMFPayload(
            gatewayIdentification: options.gatewayIdentification, gatewaySerial: record.gateway.rawValue,
            gatewayVersion: options.gatewayVersion, pagination: "F\(record.seq)", meterSerial: record.sourceID,
            readings: [
                OCMFReading(time: time, value: OCMFFormat.decimal(record.importTotal.rawValue, scale: 6), obis: importOBIS, unit: "kWh", status: status),
                OCMFReading(time: time, value: OCMFFormat.decimal(record.exportTotal.rawValue, scale: 6), obis: exportOBIS, unit: "kWh", status: status),
            ],
            vendor: [("ZP", .string(record.prev.hexString)), ("ZM", record.json.sortedObject)])
    }
}

extension JSONValue {
    /// The same value with object members sorted as in the canonical form, so `orderedBytes` of an object
    /// that embeds it writes the embedded part canonically.
    var sortedObject: JSONValue {
        switch self {
        case .object(let members):
            return .object(members.sorted { JSONValue.precedes($0.0, $1.0) }.map { ($0.0, $0.1.sortedObject) })
        case .array(let items): return .array(items.map(\.sortedObject))
        default: return self
        }
    }
}
