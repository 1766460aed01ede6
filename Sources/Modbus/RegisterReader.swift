/// Something that reads registers from a unit: a libmodbus connection in production, a scripted fake in
/// unit tests of the scheduler.
public protocol RegisterReader: Sendable {
    /// Reads `count` registers of `space` starting at `address` from `unit`.
    func readRegisters(unit: Int, space: RegisterField.Space, address: Int, count: Int) async throws(ModbusError) -> [UInt16]
}

extension ModbusConnection: RegisterReader {
    /// Reads holding (FC 03) or input (FC 04) registers.
    /// The corresponding C functions are `modbus_read_registers` and `modbus_read_input_registers`.
    public func readRegisters(unit: Int, space: RegisterField.Space, address: Int, count: Int) throws(ModbusError) -> [UInt16] {
        switch space {
        case .holding: return try readHoldingRegisters(unit: unit, address: address, count: count)
        case .input: return try readInputRegisters(unit: unit, address: address, count: count)
        }
    }
}

/// Reads a profile's planned requests from one unit.
public struct MeterReader: Sendable {
    public let profile: MeterProfile
    public let plan: RequestPlan

    /// - Parameter profile: a profile whose addresses are final (a SunSpec profile already ``MeterProfile/located(at:)``).
    public init(profile: MeterProfile, quantities: Set<Quantity>? = nil) {
        self.profile = profile
        self.plan = RequestPlan(profile: profile, quantities: quantities)
    }

    /// What one read of a meter returned.
    public struct Readout: Sendable {
        public var values: [Quantity: Double]
        public var blocks: [RegisterBlock]
        /// Requests sent, and requests the meter refused with an exception (their fields are missing).
        public var requests: Int
        public var refused: [ModbusError]
    }

    /// Sends the plan's requests one after another, pausing `pause` between them.
    ///
    /// A timeout, a broken connection or a damaged frame ends the read at once and is thrown: a dead device
    /// costs one timeout, not one per request. An exception answer (the device is alive but refuses one
    /// range) only drops that request's fields.
    /// Runs on the caller's executor (`nonisolated(nonsending)`): a bus poller keeps it on its own queue.
    /// - Parameter sleep: how to wait `pause` between requests (default `Task.sleep`; the bus poller passes a
    ///   wait on its own queue, which does not depend on the cooperative pool).
    nonisolated(nonsending) public func read(unit: Int, from reader: any RegisterReader, pause: Duration = .zero,
                                             sleep: (Duration) async -> Void = { try? await Task.sleep(for: $0) }) async throws(ModbusError) -> Readout {
        var blocks: [RegisterBlock] = []
        var refused: [ModbusError] = []
        for (i, request) in plan.requests.enumerated() {
            if i > 0 && pause > .zero { await sleep(pause) }
            do {
                let words = try await reader.readRegisters(unit: unit, space: request.space, address: request.address, count: request.count)
                blocks.append(RegisterBlock(space: request.space, address: request.address, words: words))
            } catch {
                guard case .exception = error.kind else { throw error }
                refused.append(error)
            }
        }
        if blocks.isEmpty, let first = refused.first { throw first }
        return Readout(values: profile.decode(blocks), blocks: blocks, requests: plan.requests.count, refused: refused)
    }
}

import MeterCore
