import Logging
import MeterCore
import ServiceLifecycle

/// Once start-up is over (the first poll cycle completed: when `READY=1` goes to systemd), gives back the
/// memory only start-up used, once: the heap's free memory (`malloc_trim`) and, unless turned off, the
/// executable's pages that are not used again (`madvise(MADV_PAGEOUT)`; pages still in use fault back in).
/// Logs what it reclaimed, then waits for shutdown. A failure is logged and changes nothing else.
public struct StartupMemoryService: Service {
    let heartbeat: Heartbeat
    let staleAfter: Duration
    let pageOutExecutable: Bool
    let logger: Logger

    public init(heartbeat: Heartbeat, staleAfter: Duration, pageOutExecutable: Bool, logger: Logger) {
        self.heartbeat = heartbeat
        self.staleAfter = staleAfter
        self.pageOutExecutable = pageOutExecutable
        self.logger = logger
    }

    public func run() async throws {
        while !heartbeat.isFresh(within: staleAfter) {
            if Task.isShuttingDownGracefully || Task.isCancelled { return }
            try? await Task.sleep(for: .milliseconds(200))
        }
        await Self.releaseNow(after: "first poll", pageOutExecutable: pageOutExecutable, logger: logger)
        try? await gracefulShutdown()
    }

    /// Releases start-up memory now (``release(pageOutExecutable:)``) and logs what it did, or why not.
    public static func releaseNow(after stage: String, pageOutExecutable: Bool, logger: Logger) async {
        switch await release(pageOutExecutable: pageOutExecutable) {
        case .success(let report): logger.info("start-up memory released", metadata: ["after": "\(stage)", "memory": "\(report)"])
        case .failure(let error): logger.warning("start-up memory not released after \(stage): \(error)")
        }
    }

    /// What ``release(pageOutExecutable:)`` did: the resident set before and after `malloc_trim`, and the
    /// page-out when asked for.
    public struct Report: Sendable, CustomStringConvertible {
        public var start: ResidentSet
        public var afterTrim: ResidentSet
        public var pageOut: PageOutReport?

        public var description: String {
            "RSS \(start.currentMiB) MiB, \(afterTrim.currentMiB) MiB after malloc_trim"
                + (pageOut.map { "; \($0)" } ?? "") + "; peak \((pageOut?.after ?? afterTrim).peakMiB) MiB"
        }
    }

    /// Trims the heap and pages out the executable (when `pageOutExecutable`), on a dispatch thread.
    public static func release(pageOutExecutable: Bool) async -> Result<Report, ProcessMemoryError> {
        await runBlocking {
            do throws(ProcessMemoryError) {
                let start = try ProcessMemory.residentSet()
                ProcessMemory.trimMallocHeap()
                let afterTrim = try ProcessMemory.residentSet()
                let pageOut = pageOutExecutable ? try ProcessMemory.pageOutExecutable() : nil
                return .success(Report(start: start, afterTrim: afterTrim, pageOut: pageOut))
            } catch {
                return .failure(error)
            }
        }
    }
}
