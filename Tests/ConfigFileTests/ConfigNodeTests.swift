import ConfigFile
import Testing

@Suite(.timeLimit(.minutes(5))) struct ConfigNodeTests {
    @Test func readsTypedValuesWithKeyPaths() throws {
        let root = try ConfigNode.parse("""
            a: 5
            b: { c: 0x10, d: 1.5, e: true, f: 15m }
            list: [x, y]
            """, file: "t.yaml")
        let m = try root.mapping()
        #expect(try m.required("a", expected: "int").int() == 5)
        let b = try m.required("b", expected: "map").mapping()
        #expect(try b.required("c", expected: "").int() == 16)
        #expect(try b.required("d", expected: "").double() == 1.5)
        #expect(try b.required("e", expected: "").bool() == true)
        #expect(try b.required("f", expected: "").duration() == .seconds(900))
        let list = try m.required("list", expected: "").list()
        #expect(list.map(\.keyPath) == ["list[0]", "list[1]"])
    }

    @Test func unknownKeysAreErrorsWithASuggestion() throws {
        let root = try ConfigNode.parse("intervall: 5\nname: x\n", file: "g.yaml")
        let m = try root.mapping()
        _ = m.optional("interval")
        _ = m.optional("name")
        let error = #expect(throws: ConfigError.self) { try m.finish() }
        #expect(error?.keyPath == "intervall")
        #expect(error?.line == 1)
        #expect(error?.description.contains("did you mean 'interval'") == true)
    }

    @Test func wrongTypesNameTheKeyAndTheExpectation() throws {
        let root = try ConfigNode.parse("meters:\n  - id: 5\n    unit: one\n", file: "c.yaml")
        let meter = try root.mapping().required("meters", expected: "").list()[0].mapping()
        let error = #expect(throws: ConfigError.self) { try meter.required("unit", expected: "").int() }
        #expect(error?.description == "c.yaml:3:11: meters[0].unit: expected an integer, found the scalar 'one'")
    }

    @Test func syntaxErrorsNameTheLine() {
        let error = #expect(throws: ConfigError.self) { try ConfigNode.parse("a: [1, 2\nb: 3\n", file: "bad.yaml") }
        #expect(error?.file == "bad.yaml")
        #expect((error?.line ?? 0) > 0)
        #expect(error?.message.contains("YAML") == true)
    }

    @Test func missingFileIsAnError() {
        let error = #expect(throws: ConfigError.self) { try ConfigNode.load(path: "/nonexistent/metergate.yaml") }
        #expect(error?.description == "/nonexistent/metergate.yaml: no such file")
    }

    @Test func duplicateKeysAreRejected() throws {
        let error = #expect(throws: ConfigError.self) { try ConfigNode.parse("a: 1\na: 2\n", file: "d.yaml") }
        #expect(error?.message.contains("duplicated key(s): 'a'") == true)
    }
}
