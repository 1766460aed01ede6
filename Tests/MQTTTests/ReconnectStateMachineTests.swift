import Delivery
import MQTT
import TestSupport
import Testing

/// A deterministic generator, so jitter can be checked exactly.
typealias SeededGenerator = SplitMix64

/// A generator that always returns the same value: 0 gives no jitter, max gives the full jitter.
struct FixedGenerator: RandomNumberGenerator {
    var value: UInt64
    mutating func next() -> UInt64 { value }
}

@Suite(.timeLimit(.minutes(5))) struct ReconnectStateMachineTests {
    let policy = BackoffPolicy(initial: .milliseconds(500), maximum: .seconds(30), multiplier: 2, jitter: 0.5)

    @Test func delaysDoubleUpToTheCapWithoutJitter() {
        var machine = ReconnectStateMachine(policy: policy)
        var noJitter = FixedGenerator(value: 0)
        #expect(machine.start() == .connect(.v5))
        var delays: [Duration] = []
        for _ in 0..<9 {
            guard case .wait(let d) = machine.attemptFailed(.transport, using: &noJitter) else { Issue.record("no wait"); return }
            delays.append(d)
            #expect(machine.timerFired() == .connect(.v5))
        }
        #expect(delays == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30), .seconds(30)])
        #expect(machine.consecutiveFailures == 9)
    }

    @Test func jitterStaysWithinItsShareOfTheDelay() {
        var machine = ReconnectStateMachine(policy: policy)
        var random = SeededGenerator(state: 42)
        _ = machine.start()
        var seen = Set<Duration>()
        for failure in 1...40 {
            guard case .wait(let d) = machine.attemptFailed(.transport, using: &random) else { Issue.record("no wait"); return }
            let base = machine.baseDelay(afterFailures: failure)
            #expect(d <= base)
            #expect(d >= base / 2)
            seen.insert(d)
            _ = machine.timerFired()
        }
        #expect(seen.count > 10, "jitter spreads the delays")
    }

    @Test func anAcceptedConnectionResetsTheBackoffAndALostOneWaitsAgain() {
        var machine = ReconnectStateMachine(policy: policy)
        var noJitter = FixedGenerator(value: 0)
        _ = machine.start()
        for _ in 0..<4 {
            _ = machine.attemptFailed(.transport, using: &noJitter)
            _ = machine.timerFired()
        }
        #expect(machine.connected() == .none)
        #expect(machine.state == .connected)
        #expect(machine.consecutiveFailures == 0)
        #expect(machine.connectionLost(using: &noJitter) == .wait(.milliseconds(500)))
        // Events that do not apply in a state change nothing.
        #expect(machine.connectionLost(using: &noJitter) == .none)
        #expect(machine.connected() == .none)
    }

    @Test func aBrokerThatRefusesMQTT5IsAskedAgainAtOnceWith311() {
        var machine = ReconnectStateMachine(policy: policy)
        var noJitter = FixedGenerator(value: 0)
        _ = machine.start()
        #expect(machine.attemptFailed(.refused(code: 1), using: &noJitter) == .connect(.v311))
        #expect(machine.protocolVersion == .v311)
        // Other refusals (bad credentials: 0x87) back off and keep the version.
        #expect(machine.attemptFailed(.refused(code: 0x87), using: &noJitter) == .wait(.milliseconds(500)))
        #expect(machine.timerFired() == .connect(.v311))
    }

    /// Three attempts in a row without a CONNACK switch the version (a 3.1.1-only broker that never answers MQTT 5);
    /// fewer do not (a busy broker); the version a broker accepted is kept.
    @Test func noConnackSwitchesTheVersionAfterThreeInARowAndAnAcceptedVersionIsKept() {
        var machine = ReconnectStateMachine(policy: policy)
        var noJitter = FixedGenerator(value: 0)
        _ = machine.start()
        #expect(machine.attemptFailed(.noConnack, using: &noJitter) == .wait(.milliseconds(500)))
        #expect(machine.timerFired() == .connect(.v5), "one late CONNACK is a busy broker")
        #expect(machine.attemptFailed(.noConnack, using: &noJitter) == .wait(.seconds(1)))
        #expect(machine.timerFired() == .connect(.v5))
        #expect(machine.attemptFailed(.noConnack, using: &noJitter) == .wait(.seconds(2)))
        #expect(machine.timerFired() == .connect(.v311), "three in a row: the other version")
        #expect(machine.attemptFailed(.noConnack, using: &noJitter) == .wait(.seconds(4)))
        #expect(machine.attemptFailed(.transport, using: &noJitter) == .none, "not connecting: ignored")
        #expect(machine.timerFired() == .connect(.v311))
        _ = machine.connected()
        #expect(machine.connectionLost(using: &noJitter) == .wait(.milliseconds(500)))
        #expect(machine.timerFired() == .connect(.v311), "the accepted version is kept")
        // Plain transport failures (refused TCP, TLS) keep the version.
        #expect(machine.attemptFailed(.transport, using: &noJitter) == .wait(.seconds(1)))
        #expect(machine.timerFired() == .connect(.v311))
    }

    /// Once a broker has accepted MQTT 5, no run of missing CONNACKs turns the client to 3.1.1: only a refusal of
    /// the version does.
    @Test func aBrokerThatAcceptedMQTT5IsNeverAskedWith311ForWantOfACONNACK() {
        var machine = ReconnectStateMachine(policy: policy)
        var noJitter = FixedGenerator(value: 0)
        _ = machine.start()
        _ = machine.connected()
        #expect(machine.acceptedMQTT5)
        _ = machine.connectionLost(using: &noJitter)
        for _ in 0..<10 {
            #expect(machine.timerFired() == .connect(.v5))
            _ = machine.attemptFailed(.noConnack, using: &noJitter)
        }
        #expect(machine.timerFired() == .connect(.v5))
        #expect(machine.attemptFailed(.refused(code: 0x84), using: &noJitter) == .connect(.v311), "an explicit refusal still switches")
    }

    @Test func stopEndsEverything() {
        var machine = ReconnectStateMachine(policy: policy)
        var noJitter = FixedGenerator(value: 0)
        _ = machine.start()
        machine.stop()
        #expect(machine.attemptFailed(.transport, using: &noJitter) == .none)
        #expect(machine.timerFired() == .none)
        #expect(machine.start() == .none)
    }
}

@Suite(.timeLimit(.minutes(5))) struct ReplayRequestTests {
    @Test func parsesARange() throws {
        let request = try ReplayRequest(json: Array(#"{"meter":"m1","from":5,"to":9}"#.utf8))
        #expect(request == ReplayRequest(meter: "m1", seqs: 5...9))
        #expect(try ReplayRequest(json: request.json) == request)
        #expect(try ReplayRequest(json: Array(#"{"meter":"m1","from":7}"#.utf8)).seqs == 7...7)
    }

    @Test(arguments: [
        (#"not json"#, "not a JSON object"),
        (#"{"meter":"m1","from":5,"to":2}"#, "range is empty"),
        (#"{"meter":"m1","from":0,"to":2}"#, "seqs start at 1"),
        (#"{"meter":"m1","from":-1}"#, "missing or mistyped"),
        (#"{"meter":"m1","from":1.5}"#, "missing or mistyped"),
        (#"{"from":1}"#, "missing or mistyped"),
        (#"{"meter":"m1","from":1,"until":3}"#, "unknown keys until"),
    ])
    func badRequestsSayWhatIsWrong(payload: String, expected: String) {
        let error = #expect(throws: ReplayRequest.ParseError.self) { try ReplayRequest(json: Array(payload.utf8)) }
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
    }
}
