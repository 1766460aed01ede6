internal import CMosquitto
import Dispatch
import Foundation
import Logging
import Synchronization

/// One MQTT connection that stays up: libmosquitto's threaded network loop (`mosquitto_loop_start`),
/// reconnects with capped exponential back-off and jitter (``ReconnectStateMachine``), MQTT 5 with a
/// fallback to 3.1.1, TLS, credentials, last will and birth messages.
///
/// Every connection gets a fresh libmosquitto handle, destroyed when the connection ends, so messages
/// that libmosquitto held unacknowledged are never re-sent from its memory: the caller (the outbox
/// publisher) decides what to send again. Callbacks run on libmosquitto's thread; they copy what they
/// got and yield it into ``events`` at once.
///
/// ``events`` has one consumer. Start with ``start()``, end with ``shutdown()``.
public final class MQTTClient: Sendable {
    public let configuration: MQTTClientConfiguration
    /// Everything that happens, in order. Finishes after ``shutdown()``.
    public let events: AsyncStream<MQTTEvent>
    let outlet: EventOutlet
    let shared: Shared
    private let logger: Logger

    public init(configuration: MQTTClientConfiguration, logger: Logger = Logger(label: "metergate.mqtt")) {
        MosquittoLibrary.initialize()
        self.configuration = configuration
        self.logger = logger
        // Unbounded is bounded in practice: PUBACKs by the inflight window, messages by the subscriptions.
        let (events, continuation) = AsyncStream.makeStream(of: MQTTEvent.self, bufferingPolicy: .unbounded)
        self.events = events
        outlet = EventOutlet(continuation)
        shared = Shared()
    }

    /// Starts connecting on a dedicated thread (never Swift's cooperative pool); returns at once.
    /// The thread runs until ``shutdown()``: a started client must be shut down.
    public func start() {
        let first = shared.state.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started
        }
        guard first else { return }
        let thread = Thread { [self] in supervise() }
        thread.name = "metergate.mqtt.\(configuration.clientID)"
        thread.start()
    }

    /// Publishes the farewell messages, disconnects and stops reconnecting; ``events`` then finishes.
    public func shutdown() async {
        shared.state.withLock { $0.stopRequested = true }
        shared.wake.signal()
        let finished = shared.finished
        let started = shared.state.withLock { $0.started }
        guard started else {
            outlet.finish()
            return
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                finished.wait()
                finished.signal()
                done.resume()
            }
        }
    }

    /// Hands one message to libmosquitto. Thread-safe and non-blocking.
    ///
    /// - Returns: the ticket that the matching ``MQTTEvent/published(session:mid:reasonCode:)`` will carry.
    /// - Throws: `MOSQ_ERR_NO_CONN` when no connection is up (nothing was queued).
    /// The corresponding C function is `mosquitto_publish`.
    @discardableResult
    public func publish(_ message: MQTTMessage) throws(MosquittoError) -> PublishTicket {
        let outcome = shared.state.withLock { state -> Result<PublishTicket, MosquittoError> in
            guard let current = state.current, let handle = OpaquePointer(bitPattern: current.handle) else {
                return .failure(MosquittoError(function: "mosquitto_publish", code: Int32(MOSQ_ERR_NO_CONN.rawValue), context: message.topic))
            }
            var mid: Int32 = 0
            let rc = message.payload.withUnsafeBytes {
                mosquitto_publish(handle, &mid, message.topic, Int32($0.count), $0.baseAddress, message.qos.rawValue, message.retain)
            }
            guard rc == Int32(MOSQ_ERR_SUCCESS.rawValue) else { return .failure(.from(rc, function: "mosquitto_publish", context: message.topic)) }
            return .success(PublishTicket(session: current.id, mid: mid))
        }
        return try outcome.get()
    }

    /// Subscribes now if connected, and again on every later connection, in the order subscribed (a broker sends
    /// a subscription's retained messages before it reads the next SUBSCRIBE). `ignoreRetained`: on MQTT 5, the
    /// broker sends no stored retained message for the filter and marks live ones as retained (for commands, which
    /// must never act from the broker's memory). The corresponding C functions are `mosquitto_subscribe` and
    /// `mosquitto_subscribe_v5`.
    public func subscribe(_ filter: String, qos: MQTTQoS = .atLeastOnce, ignoreRetained: Bool = false) {
        let subscription = Subscription(filter: filter, qos: qos, ignoreRetained: ignoreRetained)
        shared.state.withLock { state in
            if let index = state.subscriptions.firstIndex(where: { $0.filter == filter }) {
                state.subscriptions[index] = subscription
            } else {
                state.subscriptions.append(subscription)
            }
            if let current = state.current, let handle = OpaquePointer(bitPattern: current.handle) {
                subscription.send(handle, v5: current.v5)
            }
        }
    }

    struct Subscription: Sendable {
        var filter: String
        var qos: MQTTQoS
        var ignoreRetained: Bool

        func send(_ mosq: OpaquePointer, v5: Bool) {
            if v5 && ignoreRetained {
                let options = Int32(MQTT_SUB_OPT_SEND_RETAIN_NEVER.rawValue | MQTT_SUB_OPT_RETAIN_AS_PUBLISHED.rawValue)
                _ = mosquitto_subscribe_v5(mosq, nil, filter, qos.rawValue, options, nil)
            } else {
                _ = mosquitto_subscribe(mosq, nil, filter, qos.rawValue)
            }
        }
    }

    /// Stops a subscription. The corresponding C function is `mosquitto_unsubscribe`.
    public func unsubscribe(_ filter: String) {
        shared.state.withLock { state in
            state.subscriptions.removeAll { $0.filter == filter }
            if let current = state.current, let handle = OpaquePointer(bitPattern: current.handle) {
                _ = mosquitto_unsubscribe(handle, nil, filter)
            }
        }
    }

    /// The session that is up now, if any.
    public var currentSession: UInt64? { shared.state.withLock { $0.current?.id } }

    // MARK: - The supervisor thread

    private func supervise() {
        var machine = ReconnectStateMachine(policy: configuration.backoff, preferred: configuration.protocolVersion)
        var random = SystemRandomNumberGenerator()
        var action = machine.start()
        var sessionID: UInt64 = 0
        loop: while !stopRequested {
            switch action {
            case .none:
                break loop
            case .wait(let delay):
                if !sleep(delay) { break loop }
                action = machine.timerFired()
            case .connect(let version):
                sessionID += 1
                switch runSession(id: sessionID, version: version) {
                case .failed(let failure, let error):
                    action = machine.attemptFailed(failure, using: &random)
                    var retry: Duration?
                    if case .wait(let d) = action { retry = d }
                    logger.warning("MQTT connection attempt failed", metadata: ["error": "\(error)", "retry_in": "\(retry.map { "\($0)" } ?? "now")"])
                    outlet.yield(.connectFailed(error, retryIn: retry))
                case .ended:
                    _ = machine.connected()
                    action = machine.connectionLost(using: &random)
                case .stopped:
                    break loop
                }
            }
        }
        machine.stop()
        outlet.finish()
        shared.finished.signal()
    }

    private var stopRequested: Bool { shared.state.withLock { $0.stopRequested } }

    /// Sleeps `duration`, waking early on ``shutdown()``; false when stopping.
    private func sleep(_ duration: Duration) -> Bool {
        let deadline = DispatchTime.now() + .nanoseconds(Int(ReconnectStateMachine.seconds(duration) * 1e9))
        while !stopRequested {
            if shared.wake.wait(timeout: deadline) == .timedOut { return true }
        }
        return false
    }

    private enum SessionOutcome {
        case failed(ReconnectStateMachine.Failure, MosquittoError)
        case ended
        case stopped
    }

    /// One connection, from `mosquitto_new` to `mosquitto_destroy`. Blocks until it ends.
    private func runSession(id: UInt64, version: MQTTProtocolVersion) -> SessionOutcome {
        let context = "\(configuration.host):\(configuration.port)"
        let session = Session(id: id, version: version, outlet: outlet, shared: shared, configuration: configuration)
        guard let mosq = mosquitto_new(configuration.clientID, true, Unmanaged.passUnretained(session).toOpaque()) else {
            return .failed(.transport, MosquittoError(function: "mosquitto_new", code: Int32(MOSQ_ERR_NOMEM.rawValue), context: context))
        }
        defer {
            withExtendedLifetime(session) { mosquitto_destroy(mosq) }
        }
        if let error = configure(mosq, version: version) { return .failed(.transport, error) }
        Session.installCallbacks(mosq)

        let rc = mosquitto_connect(mosq, configuration.host, Int32(configuration.port), Int32(configuration.keepaliveSeconds))
        guard rc == Int32(MOSQ_ERR_SUCCESS.rawValue) else {
            return .failed(.transport, session.error(.from(rc, function: "mosquitto_connect", context: context)))
        }
        let started = mosquitto_loop_start(mosq)
        guard started == Int32(MOSQ_ERR_SUCCESS.rawValue) else {
            return .failed(.transport, .from(started, function: "mosquitto_loop_start", context: context))
        }
        // Wait for CONNACK (or the end of the session, or a shutdown).
        let deadline = DispatchTime.now() + .nanoseconds(Int(ReconnectStateMachine.seconds(configuration.connectTimeout) * 1e9))
        var gotConnack = false
        while !stopRequested, DispatchTime.now() < deadline {
            if session.connack.wait(timeout: .now() + .milliseconds(100)) == .success { gotConnack = true; break }
        }
        if !gotConnack || session.refusal != nil || !session.isConnected {
            _ = mosquitto_disconnect(mosq)
            _ = mosquitto_loop_stop(mosq, false)
            shared.clear(session: id)
            if stopRequested && !gotConnack { return .stopped }
            if let code = session.refusal {
                let reason = version == .v5 ? String(cString: mosquitto_reason_string(code)) : String(cString: mosquitto_connack_string(code))
                return .failed(.refused(code: code), session.error(MosquittoError(
                    function: "mosquitto_connect", code: Int32(MOSQ_ERR_CONN_REFUSED.rawValue),
                    context: "\(context): broker refused the \(version) connection: \(reason)")))
            }
            // The attempt ended in the network thread `mosquitto_loop_start` runs: its disconnect code when it gave one,
            // libmosquitto's own TLS log line otherwise, or our CONNACK wait running out (MOSQ_ERR_TIMEOUT).
            let why = gotConnack ? "the connection failed before CONNACK" : "no CONNACK within \(configuration.connectTimeout)"
            let tls = session.logMentionsTLS
            let code = session.disconnectCode ?? Int32((tls ? MOSQ_ERR_TLS : MOSQ_ERR_TIMEOUT).rawValue)
            return .failed(tls ? .transport : .noConnack, session.error(MosquittoError(function: "mosquitto_loop_start", code: code,
                                                                                       context: "\(context): network thread: \(why) (\(version))")))
        }
        // Connected: wait until the connection drops or a shutdown is asked for.
        var stopping = false
        while session.ended.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
            if stopRequested { stopping = true; break }
        }
        if stopping {
            shared.clear(session: id)
            for message in configuration.farewellMessages {
                _ = message.payload.withUnsafeBytes {
                    mosquitto_publish(mosq, nil, message.topic, Int32($0.count), $0.baseAddress, message.qos.rawValue, message.retain)
                }
            }
            _ = mosquitto_disconnect(mosq)
            _ = session.ended.wait(timeout: .now() + .seconds(2))
        }
        _ = mosquitto_loop_stop(mosq, false)
        shared.clear(session: id)
        return stopping ? .stopped : .ended
    }

    /// Options, credentials, TLS and will for a new handle.
    private func configure(_ mosq: OpaquePointer, version: MQTTProtocolVersion) -> MosquittoError? {
        let context = "\(configuration.host):\(configuration.port)"
        func check(_ rc: Int32, _ function: String, _ detail: String = "") -> MosquittoError? {
            rc == Int32(MOSQ_ERR_SUCCESS.rawValue) ? nil : .from(rc, function: function, context: detail.isEmpty ? context : "\(context): \(detail)")
        }
        if let e = check(mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, version == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311),
                         "mosquitto_int_option") { return e }
        if let e = check(mosquitto_int_option(mosq, MOSQ_OPT_SEND_MAXIMUM, Int32(max(1, min(configuration.maxInflight, 65535)))),
                         "mosquitto_int_option") { return e }
        if configuration.username != nil || configuration.password != nil {
            if let e = check(mosquitto_username_pw_set(mosq, configuration.username, configuration.password), "mosquitto_username_pw_set") { return e }
        }
        if let tls = configuration.tls {
            if let e = check(mosquitto_tls_set(mosq, tls.caFile, nil, tls.certFile, tls.keyFile, nil), "mosquitto_tls_set",
                             "CA \(tls.caFile)\(tls.certFile.map { ", certificate \($0)" } ?? "")\(tls.keyFile.map { ", key \($0)" } ?? "")") { return e }
        }
        if let will = configuration.will {
            let rc = will.payload.withUnsafeBytes {
                mosquitto_will_set(mosq, will.topic, Int32($0.count), $0.baseAddress, will.qos.rawValue, will.retain)
            }
            if let e = check(rc, "mosquitto_will_set", will.topic) { return e }
        }
        return nil
    }

    // MARK: - Shared state

    /// State shared by the caller's threads, the supervisor thread and libmosquitto's thread.
    final class Shared: Sendable {
        struct State {
            var started = false
            var stopRequested = false
            /// The connection that is up: its session id and handle (as a bit pattern, so the state stays Sendable).
            var current: (id: UInt64, handle: UInt, v5: Bool)?
            var subscriptions: [Subscription] = []
        }

        let state = Mutex(State())
        /// Signalled by ``MQTTClient/shutdown()`` to end a back-off sleep early.
        let wake = DispatchSemaphore(value: 0)
        /// Signalled when the supervisor thread has finished.
        let finished = DispatchSemaphore(value: 0)

        func clear(session: UInt64) {
            state.withLock { if $0.current?.id == session { $0.current = nil } }
        }
    }

    /// One connection's context, passed to libmosquitto as user data.
    final class Session: Sendable {
        let id: UInt64
        let version: MQTTProtocolVersion
        let outlet: EventOutlet
        let shared: Shared
        let birthMessages: [MQTTMessage]
        /// Signalled once CONNACK arrived (accepted or refused) or the connection closed before it.
        let connack = DispatchSemaphore(value: 0)
        /// Signalled when the connection has ended.
        let ended = DispatchSemaphore(value: 0)
        private let state = Mutex(SessionState())

        struct SessionState {
            var connected = false
            var refusal: Int32?
            /// The code of a disconnect callback that came before CONNACK (non-zero: the network loop's error).
            var disconnectCode: Int32?
            /// libmosquitto's latest warnings and errors (TLS failures are only reported there).
            var log: [String] = []
        }

        init(id: UInt64, version: MQTTProtocolVersion, outlet: EventOutlet, shared: Shared,
             configuration: MQTTClientConfiguration) {
            self.id = id
            self.version = version
            self.outlet = outlet
            self.shared = shared
            self.birthMessages = configuration.birthMessages
        }

        var isConnected: Bool { state.withLock { $0.connected } }
        var refusal: Int32? { state.withLock { $0.refusal } }
        var disconnectCode: Int32? { state.withLock { $0.disconnectCode } }
        var logMentionsTLS: Bool { state.withLock { $0.log.contains { $0.contains("OpenSSL") || $0.contains("TLS") } } }

        /// `error` with libmosquitto's last log lines appended to its context.
        func error(_ error: MosquittoError) -> MosquittoError {
            let log = state.withLock { $0.log }
            guard !log.isEmpty else { return error }
            return MosquittoError(function: error.function, code: error.code, systemErrno: error.systemErrno,
                                  context: "\(error.context); libmosquitto: \(log.joined(separator: " | "))")
        }

        static func from(_ obj: UnsafeMutableRawPointer?) -> Session? {
            obj.map { Unmanaged<Session>.fromOpaque($0).takeUnretainedValue() }
        }

        /// Sets the C callbacks. Each copies its arguments and returns quickly: it runs on libmosquitto's thread.
        static func installCallbacks(_ mosq: OpaquePointer) {
            mosquitto_connect_v5_callback_set(mosq) { mosq, obj, rc, _, properties in
                guard let session = Session.from(obj), let mosq else { return }
                session.onConnect(mosq, rc: rc, properties: properties)
            }
            mosquitto_disconnect_v5_callback_set(mosq) { mosq, obj, rc, _ in
                guard let session = Session.from(obj), let mosq else { return }
                session.onDisconnect(mosq, rc: rc)
            }
            mosquitto_publish_v5_callback_set(mosq) { _, obj, mid, reasonCode, _ in
                guard let session = Session.from(obj) else { return }
                session.outlet.yield(.published(session: session.id, mid: mid, reasonCode: reasonCode))
            }
            mosquitto_message_v5_callback_set(mosq) { _, obj, message, _ in
                guard let session = Session.from(obj), let message else { return }
                let m = message.pointee
                let topic = m.topic.map { String(cString: $0) } ?? ""
                let payload = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(m.payloadlen))) } ?? []
                session.outlet.yield(.message(MQTTMessage(topic: topic, payload: payload, qos: MQTTQoS(rawValue: m.qos) ?? .atMostOnce, retain: m.retain)))
            }
            mosquitto_subscribe_v5_callback_set(mosq) { _, obj, mid, count, granted, _ in
                guard let session = Session.from(obj) else { return }
                let qos = granted.map { Array(UnsafeBufferPointer(start: $0, count: Int(count))) } ?? []
                session.outlet.yield(.subscribed(session: session.id, mid: mid, grantedQoS: qos))
            }
            mosquitto_log_callback_set(mosq) { _, obj, level, line in
                guard let session = Session.from(obj), let line, level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING) != 0 else { return }
                let text = String(cString: line)
                let failedBeforeConnack = session.state.withLock { state -> Bool in
                    state.log.append(text)
                    if state.log.count > 8 { state.log.removeFirst() }
                    return level & MOSQ_LOG_ERR != 0 && !state.connected
                }
                // A TLS handshake that fails inside the network loop ends libmosquitto's thread without a
                // disconnect callback; its error log line is the only sign, so the attempt ends here.
                if failedBeforeConnack { session.connack.signal() }
            }
        }

        private func onConnect(_ mosq: OpaquePointer, rc: Int32, properties: OpaquePointer?) {
            guard rc == 0 else {
                state.withLock { $0.refusal = rc }
                _ = mosquitto_disconnect(mosq)
                connack.signal()
                return
            }
            var receiveMaximum: Int?
            var value: UInt16 = 0
            if let properties, mosquitto_property_read_int16(properties, Int32(MQTT_PROP_RECEIVE_MAXIMUM.rawValue), &value, false) != nil {
                receiveMaximum = Int(value)
            }
            for message in birthMessages {
                _ = message.payload.withUnsafeBytes {
                    mosquitto_publish(mosq, nil, message.topic, Int32($0.count), $0.baseAddress, message.qos.rawValue, message.retain)
                }
            }
            let subscriptions = shared.state.withLock { state in
                state.current = (id, UInt(bitPattern: mosq), version == .v5)
                return state.subscriptions
            }
            for subscription in subscriptions { subscription.send(mosq, v5: version == .v5) }
            state.withLock { $0.connected = true }
            outlet.yield(.connected(MQTTSession(id: id, protocolVersion: version, receiveMaximum: receiveMaximum)))
            connack.signal()
        }

        private func onDisconnect(_ mosq: OpaquePointer, rc: Int32) {
            shared.clear(session: id)
            // Marks the handle disconnected so that mosquitto_loop_start's thread ends instead of
            // reconnecting on its own: the supervisor owns reconnects.
            _ = mosquitto_disconnect(mosq)
            let wasConnected = state.withLock { state -> Bool in
                defer { state.connected = false }
                if !state.connected, rc != 0 { state.disconnectCode = rc }
                return state.connected
            }
            if wasConnected {
                let reason = rc == 0 ? "disconnected on request" : String(cString: mosquitto_strerror(rc))
                outlet.yield(.disconnected(session: id, reason: reason))
            }
            connack.signal()
            ended.signal()
        }
    }
}

extension MQTTClient {
    /// Where the client's events go: ``events``, or the one consumer stream ``feed(_:in:events:tick:every:)``
    /// installed before the client started.
    final class EventOutlet: Sendable {
        struct Sink: Sendable {
            let yield: @Sendable (MQTTEvent) -> Void
            let finish: @Sendable () -> Void
        }

        private let stream: AsyncStream<MQTTEvent>.Continuation
        private let sink = Mutex<Sink?>(nil)

        init(_ stream: AsyncStream<MQTTEvent>.Continuation) { self.stream = stream }

        /// Sends later events to `sink` instead of ``events``; false if a sink is already installed.
        func redirect(_ sink: Sink) -> Bool {
            self.sink.withLock { current in
                guard current == nil else { return false }
                current = sink
                return true
            }
        }

        func yield(_ event: MQTTEvent) {
            if let sink = sink.withLock({ $0 }) { sink.yield(event) } else { stream.yield(event) }
        }

        func finish() {
            sink.withLock { $0 }?.finish()
            stream.finish()
        }
    }
}
