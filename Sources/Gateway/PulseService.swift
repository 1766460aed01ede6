import Foundation
import Logging
import MeterCore
import Pulse
import ServiceLifecycle
import Synchronization

/// Counts S0 pulses on the board's GPIO lines and reports each input's total to the pipeline once a second,
/// pulse or not: at zero load no pulses come, and that is a measured zero, not a gap.
///
/// Counts are persisted by the input's own store (under the state directory) before they are reported, so a
/// restart loses no pulse already counted.
public struct PulseService: Service {
    let pulses: [PulseConfig]
    let stateDirectory: String
    let time: any TimeSource
    let logger: Logger
    let deliver: @Sendable (MeterID, UInt64, Timestamp) -> Void

    public init(pulses: [PulseConfig], stateDirectory: String, time: any TimeSource = SystemTimeSource(), logger: Logger,
                deliver: @escaping @Sendable (MeterID, UInt64, Timestamp) -> Void) {
        self.pulses = pulses
        self.stateDirectory = stateDirectory
        self.time = time
        self.logger = logger
        self.deliver = deliver
    }

    public func run() async throws {
        guard !pulses.isEmpty else { return }
        try? FileManager.default.createDirectory(atPath: "\(stateDirectory)/pulses", withIntermediateDirectories: true)
        let totals = PulseTotals()
        var readers: [(MeterID, PulseInputReader)] = []
        for pulse in pulses {
            let configuration = PulseInputConfiguration(
                name: pulse.id.rawValue, chip: pulse.input.line.chip, offset: pulse.input.line.line,
                impulsesPerKilowattHour: pulse.impulsesPerKilowattHour,
                debounce: .init(minimumPulseWidthNanos: UInt64(max(0, pulse.minimumPulse.components.seconds * 1_000_000_000
                                                                  + pulse.minimumPulse.components.attoseconds / 1_000_000_000))),
                countFile: "\(stateDirectory)/pulses/\(pulse.id).count")
            do {
                let reader = try PulseInputReader(configuration: configuration)
                readers.append((pulse.id, reader))
                // The total kept across restarts is the starting reading, before any new pulse.
                let store = PulseCountStore(path: configuration.countFile, input: configuration.name,
                                            impulsesPerKilowattHour: configuration.impulsesPerKilowattHour)
                totals.set(pulse.id, try store.load())
            } catch {
                // Like a dead meter: logged, the rest of the gateway runs, /health turns 503 if nothing answers.
                logger.error("S0 input unavailable", metadata: ["stream": "\(pulse.id)", "input": "\(pulse.input.name)", "error": "\(error)"])
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for (id, reader) in readers {
                reader.start()
                group.addTask {
                    for await update in reader.updates { totals.set(id, update.count) }
                }
                group.addTask { [logger] in
                    for await error in reader.errors { logger.error("S0 input error", metadata: ["stream": "\(id)", "error": "\(error)"]) }
                }
            }
            group.addTask { [time, deliver] in
                while !Task.isShuttingDownGracefully && !Task.isCancelled {
                    let now = time.now()
                    for (id, count) in totals.all { deliver(id, count, now) }
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            try? await gracefulShutdown()
            for (_, reader) in readers { await reader.stop() }
            group.cancelAll()
        }
    }
}

/// The latest count of each input, shared by the reader tasks and the once-a-second reporter.
final class PulseTotals: Sendable {
    private let counts = Mutex<[MeterID: UInt64]>([:])
    func set(_ id: MeterID, _ count: UInt64) { counts.withLock { $0[id] = count } }
    var all: [MeterID: UInt64] { counts.withLock { $0 } }
}
