import Delivery
import Foundation
import Testing

@Suite("BatchInbox: one consumer takes what producers queued, in order, in batches")
struct BatchInboxTests {
    @Test("what is queued while the consumer is away comes back as one batch, in order")
    func queuedElementsComeAsOneBatch() async {
        let inbox = BatchInbox<Int>()
        for n in 1...5 { inbox.append(n) }
        #expect(await inbox.next() == [1, 2, 3, 4, 5])
        inbox.append(6)
        #expect(await inbox.next() == [6])
    }

    @Test("a waiting consumer is resumed by the next element", .timeLimit(.minutes(1)))
    func waitingConsumerIsResumed() async {
        let inbox = BatchInbox<Int>()
        async let batch = inbox.next()
        // The consumer may or may not be waiting yet; either way it gets exactly this element.
        inbox.append(42)
        #expect(await batch == [42])
    }

    @Test("elements from several threads all arrive, each once, each thread's in its order", .timeLimit(.minutes(1)))
    func manyProducersLoseNothing() async {
        let inbox = BatchInbox<Int>()
        let producers = 4, each = 10_000
        let threads = (0..<producers).map { p in
            Thread { for i in 0..<each { inbox.append(p * each + i) } }
        }
        threads.forEach { $0.start() }
        var seen: [Int] = []
        while seen.count < producers * each {
            let batch = await inbox.next()
            #expect(!batch.isEmpty)
            seen += batch
        }
        #expect(seen.count == producers * each)
        #expect(Set(seen).count == producers * each)
        for p in 0..<producers {
            let mine = seen.filter { $0 / each == p }
            #expect(mine == mine.sorted(), "producer \(p)'s elements out of order")
        }
    }

    @Test("finish: what was queued is still taken, then empty batches; later appends are dropped")
    func finishDrainsThenEnds() async {
        let inbox = BatchInbox<String>()
        inbox.append("a")
        inbox.finish()
        inbox.append("b")
        #expect(await inbox.next() == ["a"])
        #expect(await inbox.next() == [])
        #expect(await inbox.next() == [])
    }

    @Test("finish resumes a waiting consumer with an empty batch", .timeLimit(.minutes(1)))
    func finishResumesWaiter() async {
        let inbox = BatchInbox<Int>()
        async let batch = inbox.next()
        // Whether the consumer is waiting yet or not, it ends with an empty batch.
        for _ in 0..<10 { await Task.yield() }
        inbox.finish()
        #expect(await batch == [])
    }

    @Test("cancelling the consumer's task ends its wait with an empty batch", .timeLimit(.minutes(1)))
    func cancellationEndsTheWait() async {
        let inbox = BatchInbox<Int>()
        let consumer = Task { await inbox.next() }
        consumer.cancel()
        #expect(await consumer.value == [])
        // The inbox still works for the next consumer.
        inbox.append(7)
        #expect(await inbox.next() == [7])
    }
}
