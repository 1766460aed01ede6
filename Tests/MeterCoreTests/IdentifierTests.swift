import MeterCore
import Testing

@Suite(.timeLimit(.minutes(5))) struct IdentifierTests {
    @Test(arguments: ["main", "gpu-0", "SDM630_1", "Zähler 3", "a.b"])
    func acceptsTopicSafeIds(_ id: String) throws {
        #expect(try Identifier(validating: id).rawValue == id)
    }

    @Test(arguments: [
        ("", Identifier.Problem.empty),
        ("a/b", .forbiddenCharacter("/")),
        ("a+b", .forbiddenCharacter("+")),
        ("meter#1", .forbiddenCharacter("#")),
        ("$SYS", .forbiddenCharacter("$")),
        ("tab\there", .controlCharacter(9)),
        (" lead", .leadingOrTrailingSpace),
    ])
    func rejectsIdsThatBreakTopics(_ id: String, _ problem: Identifier.Problem) {
        #expect(Identifier.problem(with: id) == problem)
        #expect(throws: problem) { try Identifier(validating: id) }
    }

    @Test func rejectsOverlongIds() {
        let long = String(repeating: "x", count: 65)
        #expect(Identifier.problem(with: long) == .tooLong(65))
    }
}

@Suite(.timeLimit(.minutes(5))) struct EnergyAndQualityTests {
    @Test func milliwattHoursRoundHalfAwayFromZero() {
        #expect(MilliwattHours(wattHours: 1.0005).rawValue == 1001)
        #expect(MilliwattHours(kilowattHours: 12.345678).rawValue == 12_345_678)
        #expect(MilliwattHours(wattHours: -0.0005).rawValue == -1)
    }

    @Test func qualityOrdersFromBestToWorst() {
        #expect(Quality.measured < .interpolated)
        #expect(Quality.interpolated < .estimated)
        #expect([Quality.measured, .gap, .estimated].max() == .gap)
    }

    @Test func systemClocksMove() async throws {
        let clock = SystemTimeSource()
        let a = clock.now()
        try await Task.sleep(for: .milliseconds(5))
        let b = clock.now()
        #expect(b.monotonicNanos > a.monotonicNanos)
        #expect(a.wallMillis > 1_700_000_000_000)
    }
}

@Suite(.timeLimit(.minutes(5))) struct TimestampTests {
    @Test func theMidpointGoesByTheMonotonicClock() {
        let start = Timestamp(wallNanos: 1_700_000_000_000_000_000, monotonicNanos: 5_000_000_000)
        let end = Timestamp(wallNanos: 1_700_000_000_400_000_000, monotonicNanos: 5_400_000_000)
        #expect(start.midpoint(to: end) == Timestamp(wallNanos: 1_700_000_000_200_000_000, monotonicNanos: 5_200_000_000))
        // The wall clock stepped back an hour during the read: the midpoint is still 200 ms after the start.
        let stepped = Timestamp(wallNanos: end.wallNanos - 3_600_000_000_000, monotonicNanos: end.monotonicNanos)
        #expect(start.midpoint(to: stepped) == Timestamp(wallNanos: 1_700_000_000_200_000_000, monotonicNanos: 5_200_000_000))
        #expect(start.midpoint(to: start) == start)
        // An `end` before the start (never from one clock) is taken as no time at all.
        #expect(end.midpoint(to: start) == end)
    }
}

@Suite(.timeLimit(.minutes(5))) struct UTCTextTests {
    @Test func iso8601InUTCWithoutFoundation() {
        #expect(UTCText.iso8601(epochSeconds: 0) == "1970-01-01T00:00:00Z")
        #expect(UTCText.iso8601(epochSeconds: 1_795_786_507) == "2026-11-27T13:35:07Z")
        #expect(UTCText.iso8601(epochSeconds: 1_795_786_507, compact: true) == "20261127T133507Z")
        // Before 1970 and a leap day.
        #expect(UTCText.iso8601(epochSeconds: -1) == "1969-12-31T23:59:59Z")
        #expect(UTCText.iso8601(epochSeconds: 951_782_400) == "2000-02-29T00:00:00Z")
    }
}
