import Dispatch

/// A serial executor backed by its own `DispatchQueue`.
///
/// Actors that wrap blocking C calls (libmodbus, SQLite, libgpiod) run on one of these so that a call
/// that blocks for a timeout occupies a dispatch thread of its own, never a thread of Swift's
/// cooperative pool (which has only as many threads as cores).
///
/// `@unchecked Sendable` is safe: the only stored state is an immutable `DispatchQueue`, itself thread-safe.
public final class SerialQueueExecutor: SerialExecutor, @unchecked Sendable {
    private let queue: DispatchQueue

    public init(label: String) {
        self.queue = DispatchQueue(label: label)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedSerialExecutor()) }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func checkIsolated() {
        dispatchPrecondition(condition: .onQueue(queue))
    }
}

/// Runs a blocking call (file I/O, `dlopen`, a one-shot C call) on a dispatch thread and awaits its result,
/// so it never occupies a thread of Swift's cooperative pool.
public func runBlocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: body()) }
    }
}
