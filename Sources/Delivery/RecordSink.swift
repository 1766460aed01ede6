/// Where the outbox's records go: a transport that takes one signed record at a time and later says whether it
/// arrived. ``OutboxPublisher`` drives any sink the same way (claims, a window, flushes, replays); MQTT is one,
/// ``InMemorySink`` another for tests of the drain logic.
///
/// A sink may be called from any thread; its events arrive in the order the transport saw them.
public protocol RecordSink: AnyObject, Sendable {
    /// A short name for logs and metrics (`mqtt`).
    var name: String { get }
    /// The most records the sink takes unacknowledged at once, before a session says less.
    var maxInflight: Int { get }

    /// Adds the feeders of the publisher's loop to `group`: every sink event, mapped by `events`, goes into
    /// `inbox` (which finishes when the sink's events end), and `tick` every `interval`. Called before
    /// ``start()``.
    func feed<Input: Sendable>(_ inbox: BatchInbox<Input>, in group: inout TaskGroup<Void>,
                               events: @escaping @Sendable (SinkEvent) -> Input, tick: Input, every interval: Duration)
    /// Connects (and keeps reconnecting) until ``shutdown()``.
    func start()
    /// Hands one record over; its ``SinkEvent/acknowledged(_:refusal:)`` carries the returned ticket.
    /// Throws when no session is up (nothing was queued).
    func send(meter: String, bytes: [UInt8]) throws -> SinkTicket
    /// From now on, report replay requests that arrive through the sink (``SinkEvent/replayRequest(payload:retained:)``).
    func acceptReplayRequests()
    /// Answers one replay request (best effort, outside the records' window).
    func replyToReplay(_ payload: [UInt8])
    /// Ends the session (sending whatever farewell the transport has) and stops reconnecting.
    func shutdown() async
}

/// One record handed to a sink: matched by the acknowledgement that carries the same ticket.
public struct SinkTicket: Sendable, Hashable {
    /// The session the record was sent in: a ticket of an ended session is never acknowledged.
    public var session: UInt64
    public var id: Int64

    public init(session: UInt64, id: Int64) {
        self.session = session
        self.id = id
    }
}

/// A sink's connection, as long as it lasts.
public struct SinkSession: Sendable, Hashable, CustomStringConvertible {
    public var id: UInt64
    /// The most unacknowledged records the far end takes in this session (MQTT 5 Receive Maximum), if it said.
    public var receiveMaximum: Int?
    /// What the logs say about the session (`MQTT v5`).
    public var description: String

    public init(id: UInt64, receiveMaximum: Int? = nil, description: String) {
        self.id = id
        self.receiveMaximum = receiveMaximum
        self.description = description
    }
}

/// What a sink reports, in order.
public enum SinkEvent: Sendable {
    /// A session is up: records may be sent.
    case connected(SinkSession)
    /// The session ended; its unacknowledged records will never be acknowledged.
    case disconnected(session: UInt64, reason: String)
    /// The far end took the record (`refusal` nil) or refused it (`refusal`: its reason, e.g. an MQTT 5 reason code).
    case acknowledged(SinkTicket, refusal: String?)
    /// A replay request arrived through the sink (``RecordSink/acceptReplayRequests()``).
    case replayRequest(payload: [UInt8], retained: Bool)
    /// Anything else the transport saw (a failed attempt, a subscription granted): nothing for the publisher.
    case other
}
