import Foundation
import MeterCore
import Signing
import TestSupport
import Testing

/// Every envelope with every algorithm it allows: round trip, tampering, wrong key.
@Suite(.timeLimit(.minutes(5))) struct EnvelopeTests {
    static let combinations: [(RecordEnvelope, SigningAlgorithm)] = [(.jws, .eddsa), (.jws, .es256), (.ocmf, .es256)]

    @Test(arguments: combinations)
    func roundTrip(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let key = SigningKey.generate(algorithm)
        var stream = try StreamBuilder(key: key, envelope: envelope)
        let signed = try stream.next()
        let result = RecordVerifier(keys: KeySet([key.publicKey])).verify(signed.bytes)
        let verified = try result.get()
        #expect(verified.record == signed.record)
        #expect(verified.hash == signed.hash)
        #expect(verified.envelope == envelope)
        #expect(!signed.bytes.contains(0x0A))
        if envelope == .ocmf { #expect(signed.text.hasPrefix("OCMF|{\"FV\":\"1.0\",")) }
        if envelope == .jws { #expect(signed.text.split(separator: ".").count == 3) }
    }

    @Test(arguments: combinations)
    func anyChangedByteIsCaught(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        let key = SigningKey.generate(algorithm)
        var stream = try StreamBuilder(key: key, envelope: envelope)
        let signed = try stream.next()
        let verifier = RecordVerifier(keys: KeySet([key.publicKey]))
        // Change the energy inside the signed payload, keeping the envelope well-formed.
        let tampered: [UInt8]
        switch envelope {
        case .jws:
            let parts = signed.text.split(separator: ".").map(String.init)
            let payload = String(decoding: Base64URL.decode(parts[1])!, as: UTF8.self)
            let changed = payload.replacingOccurrences(of: "\"import_mwh\":250000", with: "\"import_mwh\":260000")
            #expect(changed != payload)
            tampered = Array([parts[0], Base64URL.encode(Array(changed.utf8)), parts[2]].joined(separator: ".").utf8)
        case .ocmf:
            let changed = signed.text.replacingOccurrences(of: "\"import_mwh\":250000", with: "\"import_mwh\":260000")
            #expect(changed != signed.text)
            tampered = Array(changed.utf8)
        }
        let failure = try #require(verifier.verify(tampered).failure)
        #expect(failure.kind == .tampered)
        #expect(failure.claimed?.importDelta == MilliwattHours(260_000))
        // Change each character of the signature in turn, so that the bits it encodes change (the top bit of a
        // base64url sextet, the top bit of a hex digit): never valid.
        let bytes = signed.bytes
        let start: Int, end: Int
        if envelope == .jws {
            start = try #require(bytes.lastIndex(of: UInt8(ascii: "."))) + 1
            end = bytes.count
        } else {
            let marker = Array("\"SD\":\"".utf8)
            let at = try #require((0...(bytes.count - marker.count)).first { Array(bytes[$0..<($0 + marker.count)]) == marker })
            start = at + marker.count
            end = try #require(bytes[start...].firstIndex(of: UInt8(ascii: "\"")))
        }
        #expect(end - start >= 64, "the signature part is \(end - start) characters")
        for index in start..<end {
            var changed = bytes
            changed[index] = envelope == .jws ? Self.flipTopBit(base64url: bytes[index]) : Self.flipTopBit(hex: bytes[index])
            #expect(changed != bytes)
            #expect(verifier.verify(changed).failure != nil, "signature character \(index - start) changed and still valid")
        }
    }

    static let base64URLAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// The base64url character whose sextet differs from `c`'s in its top bit.
    static func flipTopBit(base64url c: UInt8) -> UInt8 {
        let value = base64URLAlphabet.firstIndex(of: c)!
        return base64URLAlphabet[value ^ 32]
    }

    /// The hex digit (same case) whose value differs from `c`'s in its top bit.
    static func flipTopBit(hex c: UInt8) -> UInt8 {
        let digits = Array((c >= UInt8(ascii: "a") ? "0123456789abcdef" : "0123456789ABCDEF").utf8)
        let value = digits.firstIndex(of: c)!
        return digits[value ^ 8]
    }

    @Test(arguments: combinations)
    func anotherKeyIsAnUnknownKey(_ envelope: RecordEnvelope, _ algorithm: SigningAlgorithm) throws {
        var stream = try StreamBuilder(key: .generate(algorithm), envelope: envelope)
        let signed = try stream.next()
        let failure = try #require(RecordVerifier(keys: KeySet([SigningKey.generate(algorithm).publicKey])).verify(signed.bytes).failure)
        #expect(failure.kind == .unknownKey)
        #expect(failure.reason.contains(signed.keyID))
    }

    @Test func aKeyWithTheSameIDCannotBeSwappedForAnotherAlgorithm() throws {
        // A JWS claiming ES256 must not verify with an Ed25519 key even if the kid matched.
        let ed = SigningKey.generate(.eddsa)
        var stream = try StreamBuilder(key: ed)
        let parts = try stream.next().text.split(separator: ".").map(String.init)
        let header = "{\"alg\":\"ES256\",\"kid\":\"\(ed.publicKey.keyID)\"}"
        let forged = [Base64URL.encode(Array(header.utf8)), parts[1], parts[2]].joined(separator: ".")
        #expect(RecordVerifier(keys: KeySet([ed.publicKey])).verify(Array(forged.utf8)).failure?.kind == .tampered)
        let none = [Base64URL.encode(Array("{\"alg\":\"none\",\"kid\":\"x\"}".utf8)), parts[1], ""].joined(separator: ".")
        #expect(RecordVerifier(keys: KeySet([ed.publicKey])).verify(Array(none.utf8)).failure?.kind == .malformed)
    }

    @Test func ocmfNeedsAP256KeyAndASafeSourceID() throws {
        let gw = try GatewayID(validating: "gw"), meter = try MeterID(validating: "m")
        let error = #expect(throws: SigningError.self) {
            try RecordSigner(gateway: gw, meter: meter, sourceID: "S1", envelope: .ocmf, key: .generate(.eddsa))
        }
        #expect(error?.description.contains("keygen --algorithm ES256") == true)
        #expect(throws: SigningError.notOCMFSafe(field: "source id", value: "A|B")) {
            try RecordSigner(gateway: gw, meter: meter, sourceID: "A|B", envelope: .ocmf, key: .generate(.es256))
        }
    }

    @Test func ocmfFieldsAgreeWithTheSignedRecord() throws {
        let key = SigningKey.generate(.es256)
        var stream = try StreamBuilder(key: key, envelope: .ocmf)
        try stream.next(3)
        let text = stream.records[2].text
        #expect(text.contains("\"PG\":\"F3\""))
        #expect(text.contains("\"GS\":\"gw-1\""))
        #expect(text.contains("\"MS\":\"SDM630-0012345\""))
        #expect(text.contains("\"RV\":1235.310000,\"RI\":\"01-00:01.08.00*FF\",\"RU\":\"kWh\""))
        #expect(text.contains("\"TM\":\"2025-01-15T10:45:00,000+0000 I\""))
        #expect(text.contains("}],\"ZP\":\"\(stream.records[1].hash.hexString)\",\"ZM\":{\"avg_mw\":"))
        #expect(text.contains("|{\"SA\":\"ECDSA-secp256r1-SHA256\",\"SD\":\"30"))
    }

    @Test(arguments: [(Quality.measured, "G"), (.interpolated, "G"), (.estimated, "S"), (.gap, "F")])
    func ocmfMeterStatusFollowsQuality(_ quality: Quality, _ status: String) throws {
        let key = SigningKey.generate(.es256)
        let signer = try RecordSigner(gateway: try GatewayID(validating: "gw"), meter: try MeterID(validating: "m"), sourceID: "S1",
                                      envelope: .ocmf, key: key)
        var result = try StreamBuilder.result(meter: "m", start: 0, importTotal: 10)
        result.quality = quality
        let signed = try signer.sign(result: result, position: .first(epoch: "E"))
        #expect(signed.text.components(separatedBy: "\"ST\":\"\(status)\"").count == 3, "\(signed.text)")
        #expect(try RecordVerifier(keys: KeySet([key.publicKey])).verify(signed.bytes).get().record.quality == quality)
    }

    @Test func ocmfFieldsThatContradictZMAreTampering() throws {
        // Validly signed, but the OCMF view and the MeterGate view disagree: a settlement system reading only
        // OCMF would see other numbers than MeterGate's verifier, so the record is refused.
        let key = SigningKey.generate(.es256)
        var stream = try StreamBuilder(key: key, envelope: .ocmf)
        let record = try stream.next().record
        for (field, change) in [("ZP", { (p: inout OCMFPayload) in p.vendor[0].1 = .string(String(repeating: "1", count: 64)) }),
                                ("PG", { (p: inout OCMFPayload) in p.pagination = "F7" }),
                                ("RV of 01-00:01.08.00*FF", { (p: inout OCMFPayload) in p.readings[0].value = "9.000000" })] {
            var payload = OCMFMapping.payload(for: record, options: OCMFOptions())
            change(&payload)
            let line = OCMFRecord.text(payload: payload.bytes, derSignature: try #require(try key.signDER(payload.bytes)))
            let failure = try #require(RecordVerifier(keys: KeySet([key.publicKey])).verify(line).failure)
            #expect(failure.kind == .tampered)
            #expect(failure.reason == "OCMF \(field) disagrees with the signed ZM record")
        }
    }

    // MARK: OCMF reference (shared/reference/signed-readings.md §10)

    static let referenceSPKI = "3059301306072A8648CE3D020106082A8648CE3D03010703420004C22E59DC2D779155A02CBAEF9CBA66C15E23CA3CCA1500A8679C66DAE36CBEBCEC0C75840184326CB7D755EE22A9AA0BDB0B0D736FFACDA9AC412580201583D9"
    static let referenceRecord = #"OCMF|{"FV":"1.0","GI":"ACME EnergyGateway","GS":"GW-000123","GV":"0.1.0","PG":"F100","MV":"ACME","MM":"EM-3000","MS":"M-987654","MF":"2.1","IS":false,"IL":"NONE","IT":"NONE","RD":[{"TM":"2025-01-15T10:00:00,000+0000 S","RV":1234.56,"RI":"01-00:01.08.00*FF","RU":"kWh","RT":"AC","EF":"","ST":"G"}],"ZP":"0000000000000000000000000000000000000000000000000000000000000000"}|{"SA":"ECDSA-secp256r1-SHA256","SD":"30450220557D2621797B3454C8ABA91B0E688979D153F9CDA23F03B1F4D41F2A3867E94F022100A45A479897232C00C6BF264C27077FDDBAC25EADCD88C81A0CF36AEAA05829B0"}"#

    @Test func payloadBuilderReproducesTheReferenceVector() throws {
        let payload = OCMFPayload(
            gatewayIdentification: "ACME EnergyGateway", gatewaySerial: "GW-000123", gatewayVersion: "0.1.0", pagination: "F100",
            meterVendor: "ACME", meterModel: "EM-3000", meterSerial: "M-987654", meterFirmware: "2.1",
            readings: [OCMFReading(time: OCMFFormat.time(epochMillis: 1_736_935_200_000, status: .synchronized),
                                   value: OCMFFormat.decimal(123_456, scale: 2), obis: "01-00:01.08.00*FF", unit: "kWh", currentType: "AC")],
            vendor: [("ZP", .string(StreamPosition.zeroHash.hexString))])
        let expected = Self.referenceRecord.split(separator: "|")[1]
        #expect(String(decoding: payload.bytes, as: UTF8.self) == expected)
    }

    @Test func referenceVectorVerifiesAndItsTamperedTwinDoesNot() throws {
        let key = try VerifyingKey(spkiDER: try #require([UInt8](hex: Self.referenceSPKI)))
        #expect(try OCMFRecord(Array(Self.referenceRecord.utf8)).isValid(with: key))
        let tampered = Self.referenceRecord.replacingOccurrences(of: "\"RV\":1234.56", with: "\"RV\":1234.57")
        #expect(try !OCMFRecord(Array(tampered.utf8)).isValid(with: key))
        // Not a MeterGate record (no ZM): the stream verifier says so rather than guessing.
        #expect(RecordVerifier(keys: KeySet([key])).verify(Array(Self.referenceRecord.utf8)).failure?.reason.contains("no ZM") == true)
    }

    @Test func ocmfTimeAndDecimalFormats() {
        #expect(OCMFFormat.time(epochMillis: 1_736_935_200_123, status: .unknown) == "2025-01-15T10:00:00,123+0000 U")
        #expect(OCMFFormat.time(epochMillis: 0, status: .relative) == "1970-01-01T00:00:00,000+0000 R")
        #expect(OCMFFormat.decimal(5, scale: 3) == "0.005")
        #expect(OCMFFormat.decimal(1_234_567, scale: 6) == "1.234567")
        #expect(OCMFFormat.decimal(-1_500, scale: 3) == "-1.500")
        #expect(OCMFFormat.decimal(42, scale: 0) == "42")
    }

    @Test func base64URLIsStrictAndRoundTrips() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(text) == bytes)
        }
        #expect(Base64URL.decode("AB==") == nil)
        #expect(Base64URL.decode("A") == nil)
        #expect(Base64URL.decode("AA") == [0])
        #expect(Base64URL.decode("AQ") == [1])
        #expect(Base64URL.decode("AB") == nil)   // non-zero trailing bits: not the canonical text of any bytes
    }

    /// The decoder works four characters at a time; it must accept and refuse exactly what a plain
    /// six-bits-at-a-time reading of RFC 4648 §5 (no padding, zero trailing bits) does.
    @Test func base64URLDecodingAgreesWithAPlainDecoder() {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        func plain(_ text: [UInt8]) -> [UInt8]? {
            if text.count % 4 == 1 { return nil }
            var out: [UInt8] = [], accumulator: UInt32 = 0, bits = 0
            for c in text {
                guard let v = table.firstIndex(of: c) else { return nil }
                accumulator = accumulator << 6 | UInt32(v)
                bits += 6
                if bits >= 8 {
                    bits -= 8
                    out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                    accumulator &= (1 << UInt32(bits)) - 1
                }
            }
            return accumulator == 0 ? out : nil
        }
        // Mostly valid characters, now and then one that is not (padding, the other alphabet, a space, a high byte).
        let alphabet = table + Array("=+/ \u{7F}".utf8) + [0xFF, 0x80]
        var generator = SplitMix64(seed: 8)
        var accepted = 0
        for _ in 0..<20_000 {
            let count = Int.random(in: 0...13, using: &generator)
            let text = (0..<count).map { _ in
                Int.random(in: 0..<50, using: &generator) == 0 ? alphabet.randomElement(using: &generator)! : table.randomElement(using: &generator)!
            }
            let expected = plain(text)
            #expect(Base64URL.decode(bytes: text) == expected, "\(text)")
            #expect(Base64URL.decode(bytes: text[...]) == expected)
            if expected != nil { accepted += 1 }
        }
        #expect(accepted > 2_000)
    }
}

extension Result {
    var failure: Failure? { if case .failure(let f) = self { return f } else { return nil } }
}
