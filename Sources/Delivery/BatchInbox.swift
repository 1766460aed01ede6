import Synchronization

/// A queue from producer threads (a network loop, a timer) to one async consumer that takes everything queued
/// at once. While the consumer is busy, a producer only appends; the consumer is resumed once per batch rather
/// than once per element, which is what an `AsyncStream` costs when a broker delivers thousands a second.
public final class BatchInbox<Element: Sendable>: Sendable {
    private struct State {
        var queued: [Element] = []
        var waiter: CheckedContinuation<[Element], Never>?
        var finished = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Queues `element`, or drops it once the inbox is finished.
    public func append(_ element: Element) {
        let handOff: CheckedContinuation<[Element], Never>? = state.withLock { state in
            guard !state.finished else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.queued.append(element)
            return nil
        }
        // A waiter is only ever left while nothing was queued.
        handOff?.resume(returning: [element])
    }

    /// Ends the inbox: what is queued is still taken, then ``next()`` returns an empty batch.
    public func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: [])
    }

    /// Everything queued, in order, waiting for at least one element. Empty once the inbox is finished and
    /// drained, or when the calling task is cancelled.
    public func next() async -> [Element] {
        if let ready = take() { return ready }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready: [Element]? = state.withLock { state in
                    if !state.queued.isEmpty || state.finished {
                        defer { state.queued = [] }
                        return state.queued
                    }
                    if Task.isCancelled { return [] }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: [])
        }
    }

    /// What is queued, without suspending; nil when nothing is.
    private func take() -> [Element]? {
        state.withLock { state in
            guard !state.queued.isEmpty else { return nil }
            defer { state.queued = [] }
            return state.queued
        }
    }
}
