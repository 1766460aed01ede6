/// The MQTT protocol version a connection asks for.
public enum MQTTProtocolVersion: Sendable, Hashable, CustomStringConvertible {
    case v5
    case v311

    public var description: String { self == .v5 ? "MQTT 5" : "MQTT 3.1.1" }
}

/// Capped exponential back-off with jitter.
public struct BackoffPolicy: Sendable, Hashable {
    /// The delay after the first failure (before jitter).
    public var initial: Duration
    /// No delay is longer than this.
    public var maximum: Duration
    /// Each failure multiplies the delay by this.
    public var multiplier: Double
    /// The part of each delay that is random: 0.5 picks uniformly in [delay/2, delay], so gateways that
    /// lost the same broker do not all come back in the same second.
    public var jitter: Double

    public init(initial: Duration = .milliseconds(500), maximum: Duration = .seconds(60), multiplier: Double = 2, jitter: Double = 0.5) {
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = min(max(jitter, 0), 1)
    }
}

/// Decides when and how to connect again. Pure: the caller performs the actions and reports what happened.
///
/// - A failed attempt or a lost connection waits `min(maximum, initial * multiplier^(failures-1))`, less
///   up to `jitter` of it at random.
/// - A connection that was accepted resets the back-off.
/// - A broker that refuses MQTT 5 with "unsupported protocol version" is asked again at once with 3.1.1,
///   which is then kept for this client.
/// - Attempts that get no CONNACK at all switch the version only after ``attemptsBeforeSwitching`` in a row
///   (some 3.1.1-only brokers never answer an MQTT 5 CONNECT), and never once a broker has accepted MQTT 5:
///   a busy broker answers late, and MQTT 3.1.1 would cost the refusals (a broker that drops a publish its
///   ACL denies still acknowledges it there, so the record would count as delivered). The version a broker
///   accepted is kept.
public struct ReconnectStateMachine: Sendable {
    public enum State: Sendable, Hashable {
        case idle
        case connecting(attempt: Int)
        case connected
        case waiting(Duration)
        case stopped
    }

    /// What the caller should do next.
    public enum Action: Sendable, Hashable {
        /// Connect now with this protocol version.
        case connect(MQTTProtocolVersion)
        /// Sleep this long, then report ``timerFired()``.
        case wait(Duration)
        /// Nothing (already stopped, or an event that does not apply).
        case none
    }

    /// Why an attempt ended.
    public enum Failure: Sendable, Hashable {
        /// TCP, TLS or DNS failure.
        case transport
        /// The connection was up but no CONNACK came in time, or it closed before one: what some
        /// 3.1.1-only brokers do with an MQTT 5 CONNECT instead of refusing the version.
        case noConnack
        /// The broker refused: CONNACK/reason code.
        case refused(code: Int32)
    }

    public private(set) var state: State = .idle
    public private(set) var protocolVersion: MQTTProtocolVersion
    /// Whether a broker accepted an MQTT 5 connection from this client: it speaks MQTT 5, whatever comes later.
    public private(set) var acceptedMQTT5 = false
    /// Attempts in a row that got no CONNACK with the current version.
    private var withoutConnack = 0
    /// How many attempts in a row must get no CONNACK before the other version is tried.
    public static let attemptsBeforeSwitching = 3
    /// Failures since the last accepted connection.
    public private(set) var consecutiveFailures = 0
    public let policy: BackoffPolicy

    /// The CONNACK codes that mean "this protocol version is not supported": 3.1.1 code 1, MQTT 5 reason 0x84.
    public static let unsupportedProtocolCodes: Set<Int32> = [1, 0x84]

    public init(policy: BackoffPolicy, preferred: MQTTProtocolVersion = .v5) {
        self.policy = policy
        self.protocolVersion = preferred
    }

    public mutating func start() -> Action {
        guard state == .idle else { return .none }
        state = .connecting(attempt: 1)
        return .connect(protocolVersion)
    }

    public mutating func connected() -> Action {
        guard case .connecting = state else { return .none }
        state = .connected
        consecutiveFailures = 0
        withoutConnack = 0
        if protocolVersion == .v5 { acceptedMQTT5 = true }
        return .none
    }

    /// An attempt failed before the broker accepted it.
    public mutating func attemptFailed(_ failure: Failure, using random: inout some RandomNumberGenerator) -> Action {
        guard case .connecting(let attempt) = state else { return .none }
        if case .refused(let code) = failure, protocolVersion == .v5, Self.unsupportedProtocolCodes.contains(code) {
            protocolVersion = .v311
            state = .connecting(attempt: attempt + 1)
            return .connect(.v311)
        }
        if failure == .noConnack, !acceptedMQTT5 {
            // After a few in a row, the other version: a broker that does not answer an MQTT 5 CONNECT may answer
            // 3.1.1, and one that fails 3.1.1 this way is asked with MQTT 5 again.
            withoutConnack += 1
            if withoutConnack >= Self.attemptsBeforeSwitching {
                protocolVersion = protocolVersion == .v5 ? .v311 : .v5
                withoutConnack = 0
            }
        } else if failure != .noConnack {
            withoutConnack = 0
        }
        return backOff(using: &random)
    }

    /// An accepted connection was lost.
    public mutating func connectionLost(using random: inout some RandomNumberGenerator) -> Action {
        guard state == .connected else { return .none }
        return backOff(using: &random)
    }

    public mutating func timerFired() -> Action {
        guard case .waiting = state else { return .none }
        state = .connecting(attempt: consecutiveFailures + 1)
        return .connect(protocolVersion)
    }

    public mutating func stop() {
        state = .stopped
    }

    /// The delay before jitter after `failures` consecutive failures.
    public func baseDelay(afterFailures failures: Int) -> Duration {
        let initial = Self.seconds(policy.initial)
        let maximum = Self.seconds(policy.maximum)
        let exponent = Double(max(failures - 1, 0))
        let seconds = min(maximum, initial * pow2(policy.multiplier, exponent))
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    private mutating func backOff(using random: inout some RandomNumberGenerator) -> Action {
        consecutiveFailures += 1
        let base = Self.seconds(baseDelay(afterFailures: consecutiveFailures))
        // The top 53 bits of one draw as a fraction in [0, 1): exact, and one call per back-off.
        let unit = Double(random.next() >> 11) / Double(UInt64(1) << 53)
        let jittered = base * (1 - policy.jitter * unit)
        let delay = Duration.milliseconds(Int64((jittered * 1000).rounded()))
        state = .waiting(delay)
        return .wait(delay)
    }

    private func pow2(_ base: Double, _ exponent: Double) -> Double {
        // Capped early: 2^60 seconds is already past any maximum and keeps the product finite.
        var result = 1.0
        var n = 0
        while Double(n) < exponent && result < 1e12 {
            result *= base
            n += 1
        }
        return result
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
