import Foundation
import Gateway
import Logging
import Outbox
import Synchronization
import TestSupport
import Testing

/// Retention runs as its own service, on an injected sleep and clock: the test says when an interval has passed.
@Suite(.timeLimit(.minutes(5))) struct OutboxMaintenanceServiceTests {
    @Test func deliveredRecordsPastTheirRetentionGoAtTheNextIntervalAndUnsentOnesStay() async throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let now = Mutex(start)
        let store = InMemoryOutbox(configuration: OutboxConfiguration(retention: .seconds(3600)), clock: { now.withLock { $0 } })
        for _ in 0..<4 { _ = try await store.append(meter: "m", { _ in (Array("r".utf8), Array(repeating: 1, count: 32)) }) }
        let claimed = try await store.claimPending(limit: 3)
        _ = try await store.markDelivered(claimed.map(\.id), at: start)

        // Each sleep waits for the test's permit; the intervals asked for are recorded.
        let (permits, permit) = AsyncStream.makeStream(of: Void.self)
        let asked = Mutex<[Duration]>([])
        let sleeps = Permits(permits)
        let service = OutboxMaintenanceService(store: store, interval: .seconds(60), logger: Logger(label: "test"), sleep: { interval in
            asked.withLock { $0.append(interval) }
            guard await sleeps.next() else { throw CancellationError() }
        }, now: { now.withLock { $0 } })
        let run = Task { try await service.run() }

        permit.yield()   // an interval passes, within the retention: nothing goes
        try await waitUntil { asked.withLock { $0.count } == 2 }
        #expect(try await store.stats().delivered == 3)

        now.withLock { $0 = start.addingTimeInterval(3601) }
        permit.yield()   // past the retention: the delivered records go, the unsent one stays
        try await waitUntil { asked.withLock { $0.count } == 3 }
        let stats = try await store.stats()
        #expect(stats.delivered == 0 && stats.pending == 1)
        #expect(asked.withLock { $0 }.allSatisfy { $0 == .seconds(60) })
        run.cancel()
        permit.finish()
        _ = try? await run.value
    }

    /// The permits' iterator: only the service's one task calls ``next()``, one call at a time.
    private final class Permits: @unchecked Sendable {
        var iterator: AsyncStream<Void>.Iterator
        init(_ stream: AsyncStream<Void>) { iterator = stream.makeAsyncIterator() }
        func next() async -> Bool { await iterator.next() != nil }
    }

    private func waitUntil(_ condition: () -> Bool) async throws {
        for _ in 0..<500 where !condition() { try await Task.sleep(for: .milliseconds(5)) }
        #expect(condition())
    }
}
