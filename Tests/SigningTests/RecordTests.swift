import Foundation
import MeterCore
import Signing
import Testing

@Suite(.timeLimit(.minutes(5))) struct RecordTests {
    @Test func payloadIsCanonicalSortedIntegerJSON() throws {
        var stream = try StreamBuilder(key: .generate(.eddsa))
        let signed = try stream.next()
        let payload = signed.record.canonicalBytes
        let text = String(decoding: payload, as: UTF8.self)
        // Sorted members, no whitespace, integers for power (mW) and energy (mWh).
        #expect(text.hasPrefix("{\"avg_mw\":1000500,\"end_ms\":1736936100000,\"epoch\":\"E1\","))
        #expect(text.contains("\"peak_mw\":2200250"))
        #expect(text.contains("\"prev\":\"" + String(repeating: "0", count: 64) + "\""))
        #expect(text.contains("\"source\":{\"id\":\"SDM630-0012345\",\"kind\":\"modbus\"}"))
        #expect(text.hasSuffix("\"v\":1}"))
        #expect(!text.contains(" "))
        // The same record always gives the same bytes, and reading them back gives the same record.
        #expect(try ReadingRecord(payload: payload) == signed.record)
        #expect(try ReadingRecord(payload: payload).canonicalBytes == payload)
    }

    /// The payload is written directly in JCS order; it must be the bytes of the general JCS writer for every
    /// shape of record: optional members present or not, negative and extreme integers, escaped and non-ASCII text.
    @Test func directPayloadBytesAreTheGeneralJCSBytes() throws {
        let keyID = SigningKey.generate(.eddsa).publicKey.keyID
        let base = ReadingRecord(
            gateway: try GatewayID(validating: "gw-1"), meter: try MeterID(validating: "meter_7"), sourceKind: .modbus,
            sourceID: "SDM630 \"unit\" 3\\bus\n\u{01}ä\u{1F600}", epoch: "E-1_x", seq: 1, startMillis: -5, endMillis: 0,
            importTotal: MilliwattHours(Int64.max), exportTotal: .zero, importDelta: MilliwattHours(10), exportDelta: MilliwattHours(0),
            averageMilliwatts: Int64.min, peakMilliwatts: -1, sampleCount: 0, quality: .estimated,
            prev: (0..<32).map { UInt8($0 * 8 + 1) }, keyID: keyID)
        var variants = [base]
        for quality in Quality.allCases { var r = base; r.quality = quality; variants.append(r) }
        var rotated = base; rotated.previousKeyID = "old-\(keyID)"; variants.append(rotated)
        var lost = base; lost.seq = UInt64(Int64.max); lost.storeLost = StoreLoss(seqs: 1...UInt64(Int64.max - 1), cause: .damage); variants.append(lost)
        for cause in StoreLoss.Cause.allCases { var r = lost; r.storeLost?.cause = cause; variants.append(r) }
        var both = lost; both.previousKeyID = "k"; both.sourceKind = .pulse; both.sourceID = ""; both.storeLost?.cause = .quota; variants.append(both)
        for record in variants {
            #expect(String(decoding: record.canonicalBytes, as: UTF8.self) == String(decoding: record.json.canonicalBytes, as: UTF8.self))
        }
    }

    @Test func stringsUseTheMinimalJCSEscapes() throws {
        let value = JSONValue.object([("b", .string("q\"\\\n\u{01}ä|/")), ("a", .integer(-3))])
        #expect(String(decoding: value.canonicalBytes, as: UTF8.self) == "{\"a\":-3,\"b\":\"q\\\"\\\\\\n\\u0001ä|/\"}")
        #expect(try JSONValue.parse(value.canonicalBytes) == JSONValue.object([("a", .integer(-3)), ("b", .string("q\"\\\n\u{01}ä|/"))]))
    }

    @Test func membersSortByUTF16CodeUnitsAsRFC8785Says() {
        // UTF-8 byte order would put U+FB01 before U+1F600; JCS (UTF-16 code units) puts the surrogate pair first.
        let value = JSONValue.object([("\u{FB01}", .integer(3)), ("\u{1F600}", .integer(2)), ("\u{E9}", .integer(1)), ("b", .null), ("a", .null)])
        #expect(String(decoding: value.canonicalBytes, as: UTF8.self) == "{\"a\":null,\"b\":null,\"\u{E9}\":1,\"\u{1F600}\":2,\"\u{FB01}\":3}")
    }

    @Test func chainHashIsSHA256OfThePayload() throws {
        var stream = try StreamBuilder(key: .generate(.eddsa))
        let first = try stream.next()
        let second = try stream.next()
        #expect(first.hash.count == 32)
        #expect(second.record.prev == first.hash)
        #expect(second.record.seq == 2)
        #expect(first.hash != second.hash)
    }

    @Test(arguments: [
        ("{\"v\":2}", "version 2 is not supported"),
        ("{\"v\":1,\"color\":\"red\"}", "'color' is not part of schema"),
        ("[1]", "must be a JSON object"),
        ("{\"v\":1,\"v\":1}", "duplicate member"),
        ("{\"v\":1", "invalid JSON"),
    ])
    func readingRejectsWhatIsNotAVersion1Record(_ payload: String, _ message: String) {
        let error = #expect(throws: RecordError.self) { try ReadingRecord(payload: Array(payload.utf8)) }
        #expect(error?.description.contains(message) == true, "\(String(describing: error))")
    }

    @Test func readingRejectsFractionsAndBadMembers() throws {
        var stream = try StreamBuilder(key: .generate(.eddsa))
        let text = String(decoding: try stream.next().record.canonicalBytes, as: UTF8.self)
        for (from, to, message) in [
            ("\"samples\":900", "\"samples\":900.5", "'samples' must be an integer"),
            ("\"quality\":\"measured\"", "\"quality\":\"guessed\"", "'guessed' is not one of"),
            ("\"meter\":\"main\"", "\"meter\":\"a/b\"", "'meter' id 'a/b'"),
            ("\"import_mwh\":250000", "\"import_mwh\":-1", "must not be negative"),
        ] {
            let bad = text.replacingOccurrences(of: from, with: to)
            #expect(bad != text)
            let error = #expect(throws: RecordError.self) { try ReadingRecord(payload: Array(bad.utf8)) }
            #expect(error?.description.contains(message) == true, "\(String(describing: error))")
        }
    }

    @Test func signerRefusesBadInputAndSignsNothing() throws {
        let signer = try RecordSigner(gateway: try GatewayID(validating: "gw"), meter: try MeterID(validating: "m"), sourceID: "S1",
                                      envelope: .jws, key: .generate(.eddsa))
        var result = try StreamBuilder.result(meter: "m", start: 0, importTotal: 10)
        result.averagePowerWatts = .nan
        #expect(throws: SigningError.invalidInput(.invalid(field: "avg_mw", reason: "power nan W is not a finite number"))) {
            try signer.sign(result: result, position: .first(epoch: "E"))
        }
        let ok = try StreamBuilder.result(meter: "m", start: 0, importTotal: 10)
        #expect(throws: SigningError.self) { try signer.sign(result: ok, position: .first(epoch: "no spaces")) }
        #expect(throws: SigningError.self) { try signer.sign(result: ok, position: StreamPosition(epoch: "E", seq: 0, prev: StreamPosition.zeroHash)) }
        #expect(throws: SigningError.self) { try signer.sign(result: ok, position: StreamPosition(epoch: "E", seq: 2, prev: [1, 2, 3])) }
        var inverted = ok
        inverted.endMillis = inverted.startMillis
        #expect(throws: SigningError.self) { try signer.sign(result: inverted, position: .first(epoch: "E")) }
        let other = try StreamBuilder.result(meter: "other", start: 0, importTotal: 10)
        #expect(throws: SigningError.wrongMeter(expected: try MeterID(validating: "m"), found: try MeterID(validating: "other"))) {
            try signer.sign(result: other, position: .first(epoch: "E"))
        }
    }

    @Test func keyRotationNamesThePreviousKeyOnce() throws {
        let old = SigningKey.generate(.eddsa), new = SigningKey.generate(.es256)
        var stream = try StreamBuilder(key: old)
        try stream.next(2)
        try stream.rotate(to: new)
        let first = try stream.next()
        let second = try stream.next()
        #expect(first.record.previousKeyID == old.publicKey.keyID)
        #expect(first.record.keyID == new.publicKey.keyID)
        #expect(second.record.previousKeyID == nil)
    }

    /// The first record after the gateway's store lost published records states them, signed, in both
    /// envelopes; a reader accepts only a range before the record's own seq.
    @Test(arguments: [RecordEnvelope.jws, .ocmf])
    func aStatedStoreLossIsSignedAndReadBack(envelope: RecordEnvelope) throws {
        var stream = try StreamBuilder(key: .generate(.es256), envelope: envelope)
        try stream.next(2)
        stream.position = StreamPosition(epoch: "E1", seq: 8, prev: stream.records[1].hash, storeLost: StoreLoss(seqs: 3...7, cause: .damage))
        let stated = try stream.next()
        #expect(stated.record.storeLost == StoreLoss(seqs: 3...7, cause: .damage))
        #expect(try stream.next().record.storeLost == nil)
        let payload = stated.record.canonicalBytes
        #expect(String(decoding: payload, as: UTF8.self).contains("\"store_lost\":{\"from_seq\":3,\"to_seq\":7}"))
        #expect(try ReadingRecord(payload: payload) == stated.record)
        if envelope == .ocmf { #expect(stated.text.contains("\"store_lost\"")) }
        for bad in ["{\"from_seq\":3,\"to_seq\":8}", "{\"from_seq\":0,\"to_seq\":2}", "{\"from_seq\":5,\"to_seq\":4}", "{\"from_seq\":3}",
                    "{\"from_seq\":3,\"to_seq\":7,\"cause\":\"damage\"}", "{\"from_seq\":3,\"to_seq\":7,\"cause\":\"disk\"}",
                    "{\"from_seq\":3,\"to_seq\":7,\"why\":\"quota\"}", "{\"from_seq\":3,\"to_seq\":7,\"cause\":1}"] {
            let text = String(decoding: payload, as: UTF8.self)
                .replacingOccurrences(of: "{\"from_seq\":3,\"to_seq\":7}", with: bad)
            #expect(throws: RecordError.self, "store_lost \(bad)") { try ReadingRecord(payload: Array(text.utf8)) }
        }
    }
}

extension RecordTests {
    /// A record names the meter that answered and, once, a replacement: both signed in both envelopes, read back
    /// exactly, and the reader refuses malformed statements.
    @Test(arguments: [RecordEnvelope.jws, .ocmf])
    func aMeterIdentityAndAReplacementAreSignedAndReadBack(envelope: RecordEnvelope) throws {
        let stream = try StreamBuilder(key: .generate(.es256), envelope: envelope)
        let replaced = MeterReplacement(old: "eastron:SDM630:1001", new: "eastron:SDM630:2002", atMillis: 1_736_935_500_000,
                                        oldImport: MilliwattHours(1_234_810_000), oldExport: MilliwattHours(7), newImport: MilliwattHours(50_000), newExport: nil)
        let signed = try stream.signer.sign(result: try StreamBuilder.result(start: stream.startMillis, importTotal: 1_234_810_000), position: stream.position,
                                            source: SourceStatement(id: "eastron:SDM630:2002", identity: .read, replacement: replaced))
        #expect(signed.record.sourceID == "eastron:SDM630:2002" && signed.record.sourceIdentity == .read && signed.record.replacement == replaced)
        let payload = signed.record.canonicalBytes
        #expect(payload == signed.record.json.canonicalBytes, "the direct writer and the general JCS agree")
        let text = String(decoding: payload, as: UTF8.self)
        #expect(text.contains("\"source\":{\"id\":\"eastron:SDM630:2002\",\"identity\":\"read\",\"kind\":\"modbus\"}"))
        #expect(text.contains("\"replaced\":{\"at_ms\":1736935500000,\"new\":\"eastron:SDM630:2002\",\"new_import_mwh\":50000,"
                              + "\"old\":\"eastron:SDM630:1001\",\"old_export_mwh\":7,\"old_import_mwh\":1234810000}"))
        #expect(try ReadingRecord(payload: payload) == signed.record)
        let verified = try RecordVerifier(keys: KeySet([stream.signer.key.publicKey])).verify(signed.bytes).get()
        #expect(verified.record.replacement == replaced)
        for (from, to) in [("\"identity\":\"read\"", "\"identity\":\"guessed\""), ("\"identity\":\"read\"", "\"identity\":1"),
                           ("\"kind\":\"modbus\"", "\"kind\":\"modbus\",\"serial\":\"x\""), ("\"old_import_mwh\":1234810000", "\"old_import_mwh\":-1"),
                           ("\"old\":\"eastron:SDM630:1001\"", "\"old\":\"eastron:SDM630:2002\""), ("\"at_ms\":1736935500000,", ""),
                           ("\"new_import_mwh\":50000,", "\"new_import_mwh\":50000,\"why\":1,")] {
            #expect(text.contains(from))
            #expect(throws: RecordError.self, "\(to)") { try ReadingRecord(payload: Array(text.replacingOccurrences(of: from, with: to).utf8)) }
        }
    }

    /// An OCMF record's `MS` is the identity read, so it must stay printable ASCII without `|`.
    @Test func anOCMFRecordRefusesASourceIDItCannotCarry() throws {
        let stream = try StreamBuilder(key: .generate(.es256), envelope: .ocmf)
        #expect(throws: SigningError.self) {
            try stream.signer.sign(result: try StreamBuilder.result(start: stream.startMillis, importTotal: 1_000), position: stream.position,
                                   source: SourceStatement(id: "a|b", identity: .read))
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct JSONParserTests {
    @Test func duplicateMembersAreRejectedInSmallAndLargeObjects() {
        let small = "{\"a\":1,\"b\":2,\"a\":3}"
        let large = "{" + (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + ",\"k3\":0}"
        let fine = "{" + (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}"
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(small.utf8)) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(large.utf8)) }
        #expect(throws: Never.self) { try JSONValue.parse(Array(fine.utf8)) }
    }

    @Test(arguments: ["", "01", "1.", "-", "\"\\x\"", "\"\u{01}\"", "[1,]", "{\"a\" 1}", "nul", "\"\\ud800\"", "1 2", String(repeating: "[", count: 40)])
    func invalidJSONIsRejected(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(text.utf8)) }
    }

    @Test func invalidUTF8IsRejectedAndValidUTF8Kept() throws {
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0x5C, 0x6E, 0xFF, 0x22]) }   // after an escape
        #expect(try JSONValue.parse([0x22, 0xC3, 0xA4, 0x22]) == .string("ä"))
        #expect(try JSONValue.parse(Array("\"plain ascii\"".utf8)) == .string("plain ascii"))
    }

    @Test func numbersKeepTheirTextAndEscapesDecode() throws {
        #expect(try JSONValue.parse(Array("[1234.560, -0, 1e5]".utf8)) == .array([.number("1234.560"), .number("-0"), .number("1e5")]))
        #expect(try JSONValue.parse(Array("\"\\u00e4\\ud83d\\ude00\\/\"".utf8)) == .string("ä😀/"))
    }
}
