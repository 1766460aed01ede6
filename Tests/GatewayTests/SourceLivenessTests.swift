import Gateway
import Testing

/// `/health` names every polled source that has gone silent, not only a gateway where none answers.
@Suite(.timeLimit(.minutes(1))) struct SourceLivenessTests {
    @Test func silentSourcesAreNamedOnceTheirThresholdHasPassed() {
        let start = ContinuousClock.now
        let liveness = SourceLiveness(thresholds: ["a": .seconds(13), "dead": .seconds(13), "gpu": .seconds(40)], now: start)
        liveness.saw("a", at: start + .seconds(1))
        #expect(liveness.silent(now: start + .seconds(12)).isEmpty)
        // Never heard: counted from the start; heard once: from then.
        #expect(liveness.silent(now: start + .seconds(14)).map(\.source) == ["dead"])
        #expect(liveness.silent(now: start + .seconds(15)).map(\.source) == ["a", "dead"])
        liveness.saw("a", at: start + .seconds(15))
        liveness.saw("dead", at: start + .seconds(15))
        #expect(liveness.silent(now: start + .seconds(16)).isEmpty)
        #expect(liveness.silent(now: start + .seconds(41)).map(\.source) == ["a", "dead", "gpu"])
    }

    @Test func theHealthReportNamesTheSilentSource() {
        let start = ContinuousClock.now
        let beat = Heartbeat()
        beat.beat()
        let liveness = SourceLiveness(thresholds: ["feeder-1": .seconds(13), "feeder-2": .seconds(13)], now: start)
        let monitor = GatewayMonitor(heartbeat: beat, staleAfter: .seconds(3600), backlogAlarm: 10, meterCount: 2, liveness: liveness)
        liveness.saw("feeder-1", at: start + .seconds(20))
        let report = monitor.health(now: start + .seconds(21))
        #expect(!report.healthy)
        #expect(report.detail.contains("feeder-2 has not answered for 21 s") && !report.detail.contains("feeder-1"), "\(report.detail)")
    }
}
