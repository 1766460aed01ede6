import ConfigFile
import Foundation
import MeterCore
import Modbus
import TestSupport
import Testing

@Suite(.timeLimit(.minutes(5))) struct ProfileTests {
    static let library = try! ProfileLibrary(directories: ["\(repositoryRoot)/profiles"])

    @Test func everyShippedProfileLoads() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(repositoryRoot)/profiles").filter { $0.hasSuffix(".yaml") }
        #expect(files.count == Self.library.profiles.count, "one profile per file, ids unique")
        let expected = ["eastron-sdm630", "eastron-sdm120", "eastron-sdm72", "carlogavazzi-em24", "carlogavazzi-em340", "abb-b23",
                        "schneider-iem3000", "janitza-umg96rm", "sunspec-201", "sunspec-202", "sunspec-203", "sunspec-204"]
        for id in expected {
            let profile = try #require(Self.library[id], "missing profile \(id)")
            // Every meter gives power and both energy directions, with units that convert to W and Wh.
            for q in [Quantity.power, .energyImport, .energyExport] {
                let field = try #require(profile.field(q), "\(id) has no \(q)")
                #expect(field.unit.toBase != nil, "\(id) \(q) unit \(field.unit)")
            }
            #expect(profile.maxRegistersPerRequest <= 125)
            // No two fields overlap.
            for space in RegisterField.Space.allCases {
                let fields = profile.fields.filter { $0.space == space }.sorted { $0.address < $1.address }
                for (a, b) in zip(fields, fields.dropFirst()) { #expect(a.registers.upperBound <= b.address, "\(id): \(a.quantity) overlaps \(b.quantity)") }
            }
        }
    }

    @Test func functionCodesWordOrderAndSentinelsFollowTheReferences() throws {
        #expect(Self.library["eastron-sdm630"]!.fields.allSatisfy { $0.space == .input && $0.type == .float32 })
        #expect(Self.library["carlogavazzi-em24"]!.field(.power)!.wordOrder == .littleEndian)
        #expect(Self.library["carlogavazzi-em24"]!.field(.power)!.space == .input)
        #expect(Self.library["abb-b23"]!.field(.energyImport)!.type == .u64)
        #expect(Self.library["abb-b23"]!.field(.energyImport)!.sentinels == [UInt64.max])
        #expect(Self.library["schneider-iem3000"]!.field(.energyImport)!.type == .i64)
        #expect(Self.library["schneider-iem3000"]!.field(.power)!.unit == .kilowatt)
        let sunspec = Self.library["sunspec-203"]!
        #expect(sunspec.sunspecModel == 203)
        #expect(sunspec.field(.power)!.address == 18)
        #expect(sunspec.field(.power)!.scaleFactorAddress == 22)
        #expect(sunspec.field(.energyImport)!.scaleFactorAddress == 54)
        #expect(Self.library.sunspec(model: 204)?.id == "sunspec-204")
    }

    @Test func profileErrorsNameTheFileKeyAndProblem() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let cases: [(String, String)] = [
            ("profile: x\nmanufacturer: m\nmodel: m\nvalues:\n  - { quantity: power, address: 1, type: float33 }\n", "values[0].type"),
            ("profile: x\nmanufacturer: m\nmodel: m\nvalues:\n  - { quantity: power, address: 1, type: i16, scale_factor: W_SF }\n", "no scale factor 'W_SF'"),
            ("profile: x\nmanufacturer: m\nmodel: m\nvalues:\n  - { quantity: power, address: 1, type: u32, sentinel: 0xZZ }\n", "values[0].sentinel"),
            ("profile: x\nmanufacturer: m\nmodel: m\nmax_registers: 200\nvalues: []\n", "max_registers"),
            ("profile: x\nmanufacturer: m\nmodel: m\nvalues:\n  - { quantity: power, address: 1, type: u16, adress: 3 }\n", "did you mean 'address'"),
            ("profile: x\nmanufacturer: m\nmodel: m\nidentify:\n  - { address: 1 }\nvalues:\n  - { quantity: power, address: 1, type: u16 }\n", "equals: [codes] or range"),
        ]
        for (i, (text, needle)) in cases.enumerated() {
            let path = dir.write("bad\(i).yaml", text)
            let error = #expect(throws: ConfigError.self) { try MeterProfile.load(path: path) }
            #expect(error?.description.contains(needle) == true, "\(error?.description ?? "no error") should mention \(needle)")
            #expect(error?.description.contains("bad\(i).yaml") == true)
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct RequestPlanTests {
    @Test func sdm630FullProfileNeedsAtMostThreeRequests() throws {
        let profile = try #require(ProfileTests.library["eastron-sdm630"])
        #expect(profile.fields.count >= 30)
        let plan = RequestPlan(profile: profile)
        #expect(plan.requests.count <= 3)
        #expect(RequestPlan.onePerValue(profile: profile).requests.count == profile.fields.count)
        print("SDM630: \(profile.fields.count) values in \(plan.requests.count) requests: \(plan.requests.map { "@\($0.address)×\($0.count)" })")
    }

    @Test func everyPlanCoversEveryFieldWithinTheLimits() throws {
        for profile in ProfileTests.library.profiles.values {
            let plan = RequestPlan(profile: profile)
            for request in plan.requests {
                #expect(request.count <= min(profile.maxRegistersPerRequest, 125), "\(profile.id) \(request)")
                #expect(request.fields.allSatisfy { $0.space == request.space })
                #expect(request.fields.allSatisfy { request.registers.contains($0.span.lowerBound) && $0.span.upperBound <= request.registers.upperBound })
            }
            let planned = plan.requests.flatMap(\.fields).map(\.quantity)
            #expect(Set(planned) == Set(profile.fields.map(\.quantity)) && planned.count == profile.fields.count, "\(profile.id)")
        }
    }

    @Test func gapsLimitsAndFunctionCodesSplitRequests() {
        func field(_ q: String, _ a: Int, _ s: RegisterField.Space = .holding, sf: Int? = nil) -> RegisterField {
            RegisterField(quantity: Quantity(q), space: s, address: a, type: .u16, unit: .watt, scaleFactorAddress: sf)
        }
        // A gap of 5 with max_gap 4 splits; with 5 it joins.
        let fields = [field("a", 0), field("b", 6)]
        #expect(RequestPlan(profile: MeterProfile(id: "t", manufacturer: "", model: "", maxGap: 4, fields: fields)).requests.count == 2)
        #expect(RequestPlan(profile: MeterProfile(id: "t", manufacturer: "", model: "", maxGap: 5, fields: fields)).requests.count == 1)
        // max_registers caps a request even without gaps.
        let run = (0..<10).map { field("q\($0)", $0) }
        let capped = RequestPlan(profile: MeterProfile(id: "t", manufacturer: "", model: "", maxRegistersPerRequest: 4, fields: run))
        #expect(capped.requests.map(\.count) == [4, 4, 2])
        // Input and holding registers never share a request.
        let mixed = [field("a", 0, .input), field("b", 1, .holding)]
        #expect(RequestPlan(profile: MeterProfile(id: "t", manufacturer: "", model: "", maxGap: 100, fields: mixed)).requests.count == 2)
        // A scale factor rides with its value even across a gap larger than max_gap.
        let scaled = [field("w", 0, sf: 20), field("x", 10)]
        let plan = RequestPlan(profile: MeterProfile(id: "t", manufacturer: "", model: "", maxGap: 0, fields: scaled))
        #expect(plan.requests.first { $0.fields.contains { $0.quantity == Quantity("w") } }?.registers == 0..<21)
        // A subset of quantities plans only those.
        #expect(RequestPlan(profile: MeterProfile(id: "t", manufacturer: "", model: "", fields: run), quantities: [Quantity("q3")]).requests.map(\.registers) == [3..<4])
    }
}

@Suite(.timeLimit(.minutes(5))) struct FieldDecodingTests {
    @Test func scaleFactorsSentinelsAndUnits() {
        let w = RegisterField(quantity: .power, space: .holding, address: 10, type: .i16, unit: .watt, scaleFactorAddress: 12, sentinels: [0x8000])
        func block(_ words: [UInt16]) -> RegisterBlock { RegisterBlock(space: .holding, address: 10, words: words) }
        #expect(w.read(from: block([1234, 0, 0xFFFF])) == .value(123.4))         // SF −1
        #expect(w.read(from: block([1234, 0, 2])) == .value(123_400))             // SF +2
        #expect(w.read(from: block([0xFF9C, 0, 0])) == .value(-100))              // negative int16
        #expect(w.read(from: block([0x8000, 0, 0])) == .notImplemented)           // value sentinel
        #expect(w.read(from: block([1234, 0, 0x8000])) == .notImplemented)        // SF not implemented
        #expect(w.read(from: block([1234, 0, 40])) == .notImplemented)            // SF outside −10…10
        #expect(w.read(from: RegisterBlock(space: .holding, address: 10, words: [1234, 0])) == .missing)   // SF not in the block
        #expect(w.read(from: RegisterBlock(space: .input, address: 10, words: [1234, 0, 0])) == .missing)  // other space
        let kwh = RegisterField(quantity: .energyImport, space: .input, address: 0, type: .i32, wordOrder: .littleEndian, unit: .kilowattHour, scale: 0.1)
        // Carlo Gavazzi: low word first, ÷10, kWh → Wh.
        #expect(kwh.read(from: RegisterBlock(space: .input, address: 0, words: [0x86A0, 0x0001])) == .value(10_000_000))
        let abb = RegisterField(quantity: .energyImport, space: .holding, address: 0, type: .u64, unit: .kilowattHour, scale: 0.01, sentinels: [UInt64.max])
        #expect(abb.read(from: RegisterBlock(space: .holding, address: 0, words: [0, 0, 0, 12_345])) == .value(123_450))
        #expect(abb.read(from: RegisterBlock(space: .holding, address: 0, words: [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF])) == .notImplemented)
        let nan = RegisterField(quantity: .power, space: .input, address: 0, type: .float32, unit: .kilowatt)
        #expect(nan.read(from: RegisterBlock(space: .input, address: 0, words: [0x7FC0, 0])) == .notImplemented)
        #expect(nan.read(from: RegisterBlock(space: .input, address: 0, words: [0x3FC0, 0])) == .value(1500))   // 1.5 kW
    }

    @Test func typeTableForEveryWordAndByteOrder() {
        // value, type, big-endian words: each decoded in all four orders after reordering the words accordingly.
        let table: [(RegisterValue, RegisterType, [UInt16])] = [
            (.unsigned(0xBEEF), .u16, [0xBEEF]),
            (.signed(-2), .i16, [0xFFFE]),
            (.unsigned(0x1234_5678), .u32, [0x1234, 0x5678]),
            (.signed(-100_000), .i32, [0xFFFE, 0x7960]),
            (.unsigned(0x0102_0304_0506_0708), .u64, [0x0102, 0x0304, 0x0506, 0x0708]),
            (.signed(-5), .i64, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFB]),
            (.float(230.5), .float32, [0x4366, 0x8000]),
            (.float(-0.25), .float64, [0xBFD0, 0, 0, 0]),
        ]
        for (value, type, words) in table {
            #expect(decodeRegisters(words, as: type) == value, "\(type) ABCD")
            #expect(decodeRegisters(Array(words.reversed()), as: type, wordOrder: .littleEndian) == value, "\(type) CDAB")
            #expect(decodeRegisters(words.map(\.byteSwapped), as: type, byteOrder: .swapped) == value, "\(type) BADC")
            #expect(decodeRegisters(Array(words.reversed()).map(\.byteSwapped), as: type, wordOrder: .littleEndian, byteOrder: .swapped) == value, "\(type) DCBA")
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct IdentificationCheckTests {
    /// A float register holding a whole number beyond UInt64, infinity or NaN is no code; converting it
    /// trapped `metergate scan` (found by fuzzing: fuzz/corpus/modbus/identify-float-beyond-uint64).
    @Test(arguments: [RegisterType.float32, .float64])
    func floatsOutsideUInt64AreNoCode(_ type: RegisterType) {
        let check = IdentificationCheck(space: .holding, address: 0, type: type, expectation: .oneOf([1, 0xFFFF_FFFF]))
        for v in [1e30, 3e38, 18_446_744_073_709_551_616.0, .infinity, -.infinity, .nan, -1, 1.5] {
            #expect(!check.matches(encodeRegisters(.float(v), as: type)), "\(type) \(v)")
        }
        #expect(check.matches(encodeRegisters(.float(1), as: type)))
    }
}
