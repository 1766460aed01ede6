import Delivery
import Synchronization

extension MQTTClient {
    /// Adds the feeders of a client's consumer loop to `group`: the client's events go into `continuation` (which
    /// finishes when they end), and a task yields `tick` every `interval` until cancelled. The publisher and the
    /// settlement consumer both read one stream of these, in order.
    ///
    /// Called before ``start()``, the client's callbacks yield each event straight into `continuation` (``events``
    /// then stays empty): a PUBACK wakes the consumer once, not a forwarding task first. Called after, a task
    /// forwards ``events``.
    public func feed<Input: Sendable>(_ continuation: AsyncStream<Input>.Continuation, in group: inout TaskGroup<Void>,
                                      events wrap: @escaping @Sendable (MQTTEvent) -> Input, tick: Input, every interval: Duration) {
        feed(EventOutlet.Sink(yield: { continuation.yield(wrap($0)) }, finish: { continuation.finish() }), in: &group,
             tick: { continuation.yield(tick) }, every: interval)
    }

    /// As ``feed(_:in:events:tick:every:)``, into a ``BatchInbox``: the consumer takes at once whatever arrived
    /// while it was busy, so a broker's burst costs one wake-up per batch instead of one per message.
    public func feed<Input: Sendable>(_ inbox: BatchInbox<Input>, in group: inout TaskGroup<Void>,
                                      events wrap: @escaping @Sendable (MQTTEvent) -> Input, tick: Input, every interval: Duration) {
        feed(EventOutlet.Sink(yield: { inbox.append(wrap($0)) }, finish: { inbox.finish() }), in: &group,
             tick: { inbox.append(tick) }, every: interval)
    }

    private func feed(_ sink: EventOutlet.Sink, in group: inout TaskGroup<Void>, tick: @escaping @Sendable () -> Void, every interval: Duration) {
        let direct = shared.state.withLock { state in !state.started && outlet.redirect(sink) }
        if !direct {
            let events = self.events
            group.addTask {
                for await event in events { sink.yield(event) }
                sink.finish()
            }
        }
        group.addTask {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                tick()
            }
        }
    }
}
