import Foundation
import Synchronization

/// One S0 input as a board file and config name it.
public struct PulseInputConfiguration: Sendable, Hashable {
    /// The input's name (the meter stream id it feeds).
    public var name: String
    /// The GPIO chip (name, path, label or number) and line offset from the board file.
    public var chip: String
    public var offset: Int
    /// The meter's pulse constant, e.g. 1000 imp/kWh.
    public var impulsesPerKilowattHour: UInt64
    public var activeLow: Bool
    public var bias: GPIOEdgeReader.Bias
    public var debounce: PulseCounter.Configuration
    /// Where the count is kept across restarts (in the state directory).
    public var countFile: String

    public init(name: String, chip: String, offset: Int, impulsesPerKilowattHour: UInt64, activeLow: Bool = true,
                bias: GPIOEdgeReader.Bias = .asIs, debounce: PulseCounter.Configuration = .init(), countFile: String) {
        self.name = name
        self.chip = chip
        self.offset = offset
        self.impulsesPerKilowattHour = impulsesPerKilowattHour
        self.activeLow = activeLow
        self.bias = bias
        self.debounce = debounce
        self.countFile = countFile
    }
}

/// A counted pulse: the input's new total, when the pulse started (kernel CLOCK_MONOTONIC), and the power implied
/// by the time since the previous pulse.
public struct PulseUpdate: Sendable, Hashable {
    public var input: String
    public var count: UInt64
    public var pulseStartNanos: UInt64
    public var powerWatts: Double?
}

/// Debounces one input's edges and persists every counted pulse before reporting it. No GPIO: it takes events,
/// so recorded sequences drive it in tests exactly as the line does in service.
public struct PulseInputProcessor: Sendable {
    public let configuration: PulseInputConfiguration
    public private(set) var counter: PulseCounter
    private let store: PulseCountStore

    /// Restores the count from the count file (0 when there is none).
    public init(configuration: PulseInputConfiguration) throws(PulseCountStore.StoreError) {
        self.configuration = configuration
        self.store = PulseCountStore(path: configuration.countFile, input: configuration.name,
                                     impulsesPerKilowattHour: configuration.impulsesPerKilowattHour)
        self.counter = PulseCounter(configuration: configuration.debounce, count: try store.load())
    }

    /// Handles edges; each counted pulse is saved before it is returned, so a crash right after loses nothing
    /// that was reported. On a save error the count stays in memory and the error is thrown; the next save
    /// writes the full count.
    public mutating func handle(_ events: [PulseCounter.Event]) throws(PulseCountStore.StoreError) -> [PulseUpdate] {
        var updates: [PulseUpdate] = []
        var saveError: PulseCountStore.StoreError?
        for event in events where counter.handle(event) {
            do { try store.save(counter.count) } catch { saveError = error }
            updates.append(PulseUpdate(input: configuration.name, count: counter.count, pulseStartNanos: counter.lastPulseStart ?? event.timestampNanos,
                                       powerWatts: counter.powerWatts(impulsesPerKilowattHour: configuration.impulsesPerKilowattHour)))
        }
        if let saveError { throw saveError }
        return updates
    }
}

/// Where a pulse reader gets its edges: a GPIO line (`GPIOEdgeReader`), or a recorded sequence in tests.
/// `waitForEdges` is called from the reader's one thread only; it may block up to the timeout.
public protocol PulseEdgeSource: AnyObject, Sendable {
    func waitForEdges(timeoutNanos: Int64) throws -> [PulseCounter.Event]
}

extension GPIOEdgeReader: PulseEdgeSource {}

/// Reads one S0 input on a dedicated thread (libgpiod calls block) and reports counted pulses as an async stream.
///
/// `@unchecked Sendable` is safe: the edge source and the processor are used only by the reading thread after `start()`
/// (and not at all before); the continuations are thread-safe; the lifecycle flags are inside a `Mutex`; the
/// configuration is an immutable copy.
public final class PulseInputReader: @unchecked Sendable {
    public let updates: AsyncStream<PulseUpdate>
    /// Errors from the line or the count file, as they happen; reading goes on after a count-file error.
    public let errors: AsyncStream<any Error>
    private let continuation: AsyncStream<PulseUpdate>.Continuation
    private let errorContinuation: AsyncStream<any Error>.Continuation
    private let source: any PulseEdgeSource
    private var processor: PulseInputProcessor
    private let lifecycle = Mutex(Lifecycle())
    private let finished = DispatchSemaphore(value: 0)
    /// What this reader was started with.
    public let configuration: PulseInputConfiguration

    private struct Lifecycle {
        var started = false
        var stopRequested = false
        var joined = false
    }

    /// Requests the line and restores the count. Throws `GPIOError` for a missing chip or line, or
    /// `PulseCountStore.StoreError` for an unreadable count file.
    public convenience init(configuration: PulseInputConfiguration) throws {
        let processor = try PulseInputProcessor(configuration: configuration)
        let line = try GPIOEdgeReader(chip: configuration.chip, offset: configuration.offset, consumer: "metergate:\(configuration.name)",
                                      activeLow: configuration.activeLow, bias: configuration.bias)
        self.init(processor: processor, source: line)
    }

    /// Reads edges from `source` instead of the configured GPIO line (a recorded sequence, in tests), restoring
    /// the count from the count file.
    public convenience init(configuration: PulseInputConfiguration, source: any PulseEdgeSource) throws(PulseCountStore.StoreError) {
        self.init(processor: try PulseInputProcessor(configuration: configuration), source: source)
    }

    private init(processor: PulseInputProcessor, source: any PulseEdgeSource) {
        self.configuration = processor.configuration
        self.processor = processor
        self.source = source
        (updates, continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
        (errors, errorContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(64))
    }

    /// Starts the reading thread (once).
    public func start() {
        let first = lifecycle.withLock { state in
            guard !state.started && !state.stopRequested else { return false }
            state.started = true
            return true
        }
        guard first else { return }
        let thread = Thread { [self] in run() }
        thread.name = "metergate.pulse.\(configuration.name)"
        thread.start()
    }

    /// Stops the thread within about one wait timeout and finishes the streams. Safe to call more than once.
    /// The wait for the thread happens on a dispatch thread, not on the caller's cooperative one.
    public func stop() async {
        let mustJoin = lifecycle.withLock { state in
            state.stopRequested = true
            defer { if state.started { state.joined = true } }
            return state.started && !state.joined
        }
        guard mustJoin else { return }
        let finished = self.finished
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                finished.wait()
                done.resume()
            }
        }
    }

    private func run() {
        defer {
            continuation.finish()
            errorContinuation.finish()
            finished.signal()
        }
        while !lifecycle.withLock({ $0.stopRequested }) {
            do {
                let events = try source.waitForEdges(timeoutNanos: 200_000_000)
                if events.isEmpty { continue }
                do {
                    for update in try processor.handle(events) { continuation.yield(update) }
                } catch {
                    errorContinuation.yield(error)
                }
            } catch {
                errorContinuation.yield(error)
                return
            }
        }
    }
}
