internal import CModbus
#if canImport(Glibc)
import Glibc
#endif
import MeterCore

/// One libmodbus context: a TCP connection or an RTU serial line shared by several unit ids.
///
/// libmodbus is blocking and a `modbus_t` must not be used from two threads, so the actor runs on a
/// serial queue of its own: a read that waits for its timeout never holds a cooperative-pool thread,
/// and every unit on an RTU bus is serialised through the one context.
public actor ModbusConnection {
    private let executor: SerialQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    /// The queue the libmodbus calls run on. A ``BusPoller`` given it runs its loop there too, so a request
    /// is a plain call on the same thread instead of two thread switches.
    public nonisolated var serialExecutor: SerialQueueExecutor { executor }

    // Owned exclusively by this actor; freed in `deinit`.
    private nonisolated(unsafe) let context: OpaquePointer
    private var connected = false
    /// Set after a timeout: a late answer may still arrive, and must not be taken for the next one.
    private var staleAnswerPossible = false
    public nonisolated let transport: ModbusTransport
    /// Drives the transceiver's direction around each request, where the line needs it.
    public nonisolated let direction: (any RS485DirectionControl)?

    /// Creates a context for `transport`. Nothing is opened until ``connect()``.
    ///
    /// - Parameters:
    ///   - direction: for an RTU line whose transceiver's DE/RE pins are driven from a GPIO: switched to
    ///     transmit before each request and back to receive after it (see ``RS485DirectionControl``).
    ///   - directionDelayMicroseconds: with `direction`, the settle time before and after a frame
    ///     (nil: libmodbus's default of one byte time).
    /// The corresponding C functions are `modbus_new_tcp` and `modbus_new_rtu`; with `direction`, also
    /// `modbus_rtu_set_custom_rts`, `modbus_rtu_set_rts` and `modbus_rtu_set_rts_delay`.
    public init(_ transport: ModbusTransport, responseTimeout: Duration = .milliseconds(500),
                direction: (any RS485DirectionControl)? = nil, directionDelayMicroseconds: Int? = nil) throws(ModbusError) {
        self.transport = transport
        self.executor = SerialQueueExecutor(label: "metergate.modbus.\(transport)")
        let ctx: OpaquePointer?
        switch transport {
        case .tcp(let host, let port):
            ctx = modbus_new_tcp(host, Int32(port))
        case .rtu(let s):
            ctx = modbus_new_rtu(s.device, Int32(s.baud), CChar(bitPattern: s.parity.rawValue.asciiValue ?? 78), Int32(s.dataBits), Int32(s.stopBits))
        }
        guard let ctx else {
            throw ModbusError(function: transport.isTCP ? "modbus_new_tcp" : "modbus_new_rtu", code: errno, context: transport.description)
        }
        if let direction {
            do throws(ModbusError) {
                guard case .rtu(let s) = transport else {
                    throw ModbusError(function: "modbus_rtu_set_custom_rts", code: EINVAL, context: "\(transport): RS-485 direction control needs an RTU line")
                }
                try RS485DirectionRegistry.configure(ctx, control: direction, delayMicroseconds: directionDelayMicroseconds, device: s.device)
            } catch {
                modbus_free(ctx)
                throw error
            }
        }
        self.context = ctx
        self.direction = direction
        let (sec, usec) = Self.split(responseTimeout)
        modbus_set_response_timeout(ctx, sec, usec)
    }

    deinit {
        modbus_close(context)
        if direction != nil { RS485DirectionRegistry.remove(context) }
        modbus_free(context)
    }

    /// Opens the TCP connection or the serial port. The corresponding C function is `modbus_connect`.
    public func connect() throws(ModbusError) {
        if connected { return }
        if case .rtu(let s) = transport, s.rs485 {
            if modbus_rtu_set_serial_mode(context, CModbus_RTU_RS485()) != 0 {
                throw ModbusError(function: "modbus_rtu_set_serial_mode", code: errno, context: s.device)
            }
        }
        guard modbus_connect(context) == 0 else {
            throw ModbusError(function: "modbus_connect", code: errno, context: transport.description)
        }
        connected = true
    }

    /// Closes the connection; the next read reconnects. The corresponding C function is `modbus_close`.
    public func close() {
        modbus_close(context)
        connected = false
    }

    /// Sets how long to wait for the first byte of an answer. The corresponding C function is `modbus_set_response_timeout`.
    public func setResponseTimeout(_ timeout: Duration) {
        let (sec, usec) = Self.split(timeout)
        modbus_set_response_timeout(context, sec, usec)
    }

    /// Sets the longest silence allowed between two bytes of one answer. The corresponding C function is `modbus_set_byte_timeout`.
    public func setByteTimeout(_ timeout: Duration) {
        let (sec, usec) = Self.split(timeout)
        modbus_set_byte_timeout(context, sec, usec)
    }

    /// Reads `count` holding registers (FC 03) from `unit`. The corresponding C function is `modbus_read_registers`.
    public func readHoldingRegisters(unit: Int, address: Int, count: Int) throws(ModbusError) -> [UInt16] {
        try readWords(unit: unit, address: address, count: count, function: "modbus_read_registers", fc: 3) {
            modbus_read_registers(context, Int32(address), Int32(count), $0)
        }
    }

    /// Reads `count` input registers (FC 04) from `unit`. The corresponding C function is `modbus_read_input_registers`.
    public func readInputRegisters(unit: Int, address: Int, count: Int) throws(ModbusError) -> [UInt16] {
        try readWords(unit: unit, address: address, count: count, function: "modbus_read_input_registers", fc: 4) {
            modbus_read_input_registers(context, Int32(address), Int32(count), $0)
        }
    }

    /// Reads `count` coils (FC 01) from `unit`. The corresponding C function is `modbus_read_bits`.
    public func readCoils(unit: Int, address: Int, count: Int) throws(ModbusError) -> [Bool] {
        try prepare(unit: unit, function: "modbus_read_bits")
        var bits = [UInt8](repeating: 0, count: count)
        let n = bits.withUnsafeMutableBytes { CModbus_read_bits(context, Int32(address), Int32(count), $0.baseAddress) }
        let callErrno = errno
        try checkDirection("unit \(unit), FC01 @\(address) ×\(count)")
        guard n == count else {
            throw ModbusError(function: "modbus_read_bits", code: n < 0 ? callErrno : CModbus_EMBBADDATA(), context: "unit \(unit), FC01 @\(address) ×\(count)")
        }
        return bits.map { $0 != 0 }
    }

    private func prepare(unit: Int, function: String) throws(ModbusError) {
        try connect()
        guard modbus_set_slave(context, Int32(unit)) == 0 else {
            throw ModbusError(function: "modbus_set_slave", code: errno, context: "unit \(unit)")
        }
    }

    private func readWords(
        unit: Int, address: Int, count: Int, function: String, fc: Int,
        _ call: (UnsafeMutablePointer<UInt16>) -> Int32
    ) throws(ModbusError) -> [UInt16] {
        try prepare(unit: unit, function: function)
        if staleAnswerPossible {
            drainLateAnswer()
            staleAnswerPossible = false
        }
        var words = [UInt16](repeating: 0, count: count)
        let n = words.withUnsafeMutableBufferPointer { call($0.baseAddress!) }
        // errno first: the direction check below takes a lock, which may make system calls.
        let callErrno = errno
        try checkDirection("unit \(unit), FC0\(fc) @\(address) ×\(count)")
        if n == count { return words }
        let code = n < 0 ? callErrno : CModbus_EMBBADDATA()
        let error = ModbusError(function: function, code: code, context: "unit \(unit), FC0\(fc) @\(address) ×\(count)")
        if error.kind == .timeout { staleAnswerPossible = true }
        // A broken TCP stream or a framing error leaves stale bytes behind: start the next request clean.
        if error.kind == .connection || error.kind == .badFrame {
            if case .tcp = transport { close() } else { modbus_flush(context) }
        }
        throw error
    }

    /// Fails the request just made if a direction switch during it failed: its frame may never have reached
    /// the bus, or the transceiver may have talked over the answer, so what libmodbus saw is not to be trusted.
    private func checkDirection(_ request: @autoclosure () -> String) throws(ModbusError) {
        guard let direction, let failure = RS485DirectionRegistry.takeFailure(context) else { return }
        staleAnswerPossible = true
        throw ModbusError(directionFailure: failure, on: direction, context: request())
    }

    /// Drops whatever a slow device sent after we gave up on it. On a serial line the late answer may not have
    /// arrived yet: if the next request went out now, that answer would come back during it and be taken for
    /// its reply (on a shared bus, another unit's). So wait up to one response timeout for its first byte, and
    /// then until the line has been quiet for 50 ms, dropping what comes; bounded by three response timeouts.
    /// The corresponding C functions are `modbus_flush`, `modbus_get_socket`, `modbus_get_response_timeout`
    /// and `poll`.
    private func drainLateAnswer() {
        modbus_flush(context)
        guard case .rtu = transport else { return }
        let fd = modbus_get_socket(context)
        guard fd >= 0 else { return }
        var seconds: UInt32 = 0, microseconds: UInt32 = 0
        modbus_get_response_timeout(context, &seconds, &microseconds)
        let timeoutMillis = Int32(clamping: Int64(seconds) * 1000 + Int64(microseconds) / 1000)
        var waitMillis = max(timeoutMillis, 1)
        var budget = 3 * Int64(waitMillis)
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while budget > 0 {
            let started = ContinuousClock.now
            guard poll(&descriptor, 1, waitMillis) > 0 else { return }   // quiet (0), or interrupted (-1)
            modbus_flush(context)
            let spent = ContinuousClock.now - started
            budget -= spent.components.seconds * 1000 + spent.components.attoseconds / 1_000_000_000_000_000 + 1
            waitMillis = 50
        }
    }

    private static func split(_ d: Duration) -> (UInt32, UInt32) {
        let (seconds, attoseconds) = d.components
        return (UInt32(max(0, seconds)), UInt32(max(0, attoseconds / 1_000_000_000_000)))
    }
}

extension ModbusTransport {
    var isTCP: Bool { if case .tcp = self { return true } else { return false } }
}
