import Synchronization

/// A sink without a transport, for tests of the drain logic: it keeps what it was sent, and the test says when
/// a session starts or ends and which records are acknowledged or refused (``connect(receiveMaximum:)``,
/// ``acknowledge(_:refusal:)``, ``disconnect(reason:)``), or lets it acknowledge every record itself.
public final class InMemorySink: RecordSink {
    /// One record as it was handed over.
    public struct Sent: Sendable, Hashable {
        public var ticket: SinkTicket
        public var meter: String
        public var bytes: [UInt8]
    }

    private struct State {
        var session: UInt64 = 0
        var connected = false
        var nextID: Int64 = 0
        var sent: [Sent] = []
        var replies: [[UInt8]] = []
        var acceptsReplays = false
        var output: (@Sendable (SinkEvent) -> Void)?
        var finish: (@Sendable () -> Void)?
        var tick: (@Sendable () -> Void)?
        var early: [SinkEvent] = []
    }

    public let name: String
    public let maxInflight: Int
    /// Whether every record is acknowledged as soon as it is sent.
    public let acknowledgesAtOnce: Bool
    /// Whether the consumer's ticks come only from ``tick()`` (a test that steps its clock), not every interval.
    public let ticksByHand: Bool
    private let state = Mutex(State())

    public init(name: String = "memory", maxInflight: Int = 64, acknowledgesAtOnce: Bool = false, ticksByHand: Bool = false) {
        self.name = name
        self.maxInflight = maxInflight
        self.acknowledgesAtOnce = acknowledgesAtOnce
        self.ticksByHand = ticksByHand
    }

    /// Hands the consumer one tick now (what the interval timer does when the sink was not made `ticksByHand`).
    public func tick() {
        state.withLock { $0.tick }?()
    }

    public func feed<Input: Sendable>(_ inbox: BatchInbox<Input>, in group: inout TaskGroup<Void>,
                                      events: @escaping @Sendable (SinkEvent) -> Input, tick: Input, every interval: Duration) {
        let early = state.withLock { state -> [SinkEvent] in
            state.output = { inbox.append(events($0)) }
            state.finish = { inbox.finish() }
            state.tick = { inbox.append(tick) }
            defer { state.early.removeAll() }
            return state.early
        }
        for event in early { inbox.append(events(event)) }
        guard !ticksByHand else { return }
        group.addTask {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                inbox.append(tick)
            }
        }
    }

    public func start() {}

    /// Throws ``NotConnected`` outside a session, as a transport whose connection is down.
    public func send(meter: String, bytes: [UInt8]) throws -> SinkTicket {
        let (ticket, output) = try state.withLock { state throws(NotConnected) -> (SinkTicket, (@Sendable (SinkEvent) -> Void)?) in
            guard state.connected else { throw NotConnected() }
            state.nextID += 1
            let ticket = SinkTicket(session: state.session, id: state.nextID)
            state.sent.append(Sent(ticket: ticket, meter: meter, bytes: bytes))
            return (ticket, acknowledgesAtOnce ? state.output : nil)
        }
        output?(.acknowledged(ticket, refusal: nil))
        return ticket
    }

    public func acceptReplayRequests() { state.withLock { $0.acceptsReplays = true } }
    public func replyToReplay(_ payload: [UInt8]) { state.withLock { $0.replies.append(payload) } }
    public func shutdown() async { _ = disconnect(reason: "shut down") }

    /// The sink is not connected: nothing was taken.
    public struct NotConnected: Error, Hashable, CustomStringConvertible {
        public var description: String { "the in-memory sink has no session" }
    }

    // MARK: - Driven by the test

    /// Starts a new session; returns its id.
    @discardableResult
    public func connect(receiveMaximum: Int? = nil) -> UInt64 {
        let id = state.withLock { state -> UInt64 in
            state.session += 1
            state.connected = true
            return state.session
        }
        emit(.connected(SinkSession(id: id, receiveMaximum: receiveMaximum, description: "\(name) session \(id)")))
        return id
    }

    /// Ends the current session; its unacknowledged records will never be acknowledged.
    @discardableResult
    public func disconnect(reason: String = "dropped") -> Bool {
        let id = state.withLock { state -> UInt64? in
            guard state.connected else { return nil }
            state.connected = false
            return state.session
        }
        guard let id else { return false }
        emit(.disconnected(session: id, reason: reason))
        return true
    }

    /// Acknowledges (or refuses) records that were sent.
    public func acknowledge(_ tickets: [SinkTicket], refusal: String? = nil) {
        for ticket in tickets { emit(.acknowledged(ticket, refusal: refusal)) }
    }

    /// A replay request arriving through the sink (delivered only after ``acceptReplayRequests()``).
    public func receiveReplayRequest(_ payload: [UInt8], retained: Bool = false) {
        guard state.withLock({ $0.acceptsReplays }) else { return }
        emit(.replayRequest(payload: payload, retained: retained))
    }

    /// Ends the sink's events: the publisher's loop ends.
    public func finish() { state.withLock { $0.finish }?() }

    /// Everything sent so far, in order.
    public var sent: [Sent] { state.withLock { $0.sent } }
    /// The answers to replay requests, in order.
    public var replies: [[UInt8]] { state.withLock { $0.replies } }

    private func emit(_ event: SinkEvent) {
        let output = state.withLock { state -> (@Sendable (SinkEvent) -> Void)? in
            if state.output == nil { state.early.append(event) }
            return state.output
        }
        output?(event)
    }
}
