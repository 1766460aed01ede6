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

/// Reads one S0 input on a dedicated thread (libgpiod calls block) and reports counted pulses as an async stream.
///
/// `@unchecked Sendable` is safe: the reader, processor and continuation are used only by the reading thread after
/// `start()`; the stop flag and the thread handle are inside `Mutex`es.
public final class PulseInputReader: @unchecked Sendable {
    public let updates: AsyncStream<PulseUpdate>
    /// Errors from the line or the count file, as they happen; reading goes on after a count-file error.
    public let errors: AsyncStream<any Error>
    private let continuation: AsyncStream<PulseUpdate>.Continuation
    private let errorContinuation: AsyncStream<any Error>.Continuation
    private let reader: GPIOEdgeReader
    private var processor: PulseInputProcessor
    private let stopRequested = Mutex(false)
    private let finished = DispatchSemaphore(value: 0)
    private let started = Mutex(false)

    /// Requests the line and restores the count. Throws `GPIOError` for a missing chip or line, or
    /// `PulseCountStore.StoreError` for an unreadable count file.
    public init(configuration: PulseInputConfiguration) throws {
        self.processor = try PulseInputProcessor(configuration: configuration)
        self.reader = try GPIOEdgeReader(chip: configuration.chip, offset: configuration.offset, consumer: "metergate:\(configuration.name)",
                                         activeLow: configuration.activeLow, bias: configuration.bias)
        (updates, continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
        (errors, errorContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(64))
    }

    /// What this reader was started with.
    public var configuration: PulseInputConfiguration { processor.configuration }

    /// Starts the reading thread (once).
    public func start() {
        guard started.withLock({ running in defer { running = true }; return !running }) else { return }
        let thread = Thread { [self] in run() }
        thread.name = "metergate.pulse.\(processor.configuration.name)"
        thread.start()
    }

    /// Stops the thread within about one wait timeout and finishes the streams.
    public func stop() {
        stopRequested.withLock { $0 = true }
        if started.withLock({ $0 }) { finished.wait() }
    }

    private func run() {
        defer {
            continuation.finish()
            errorContinuation.finish()
            finished.signal()
        }
        while !stopRequested.withLock({ $0 }) {
            do {
                let events = try reader.waitForEdges(timeoutNanos: 200_000_000)
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
