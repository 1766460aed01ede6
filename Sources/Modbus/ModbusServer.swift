internal import CModbus
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a served device answers to one read request.
public indirect enum ModbusServerResponse: Sendable, Hashable {
    /// Answer with these register (or coil: 0/1) values; the count must match the request.
    case values([UInt16])
    /// Answer with a Modbus exception.
    case exception(ModbusException)
    /// Do not answer at all (a dead device, or a request for a unit that is not on the bus).
    case noAnswer
    /// Answer as `response` says, but only after `delay` (a slow device; on RTU it holds the whole line).
    case delayed(Duration, ModbusServerResponse)
    /// Answer with a damaged frame carrying these values: a wrong CRC on RTU, a byte count that does not
    /// match the request on TCP (which has no CRC). A client must reject it.
    case corrupted([UInt16])
}

/// One read request as the server saw it.
public struct ModbusServerRequest: Sendable, Hashable {
    public var unit: Int
    public var functionCode: Int
    public var address: Int
    public var count: Int

    public init(unit: Int, functionCode: Int, address: Int, count: Int) {
        self.unit = unit
        self.functionCode = functionCode
        self.address = address
        self.count = count
    }
}

/// Supplies the answers of a served device. Called on the server's own thread.
public protocol ModbusRequestHandler: Sendable {
    func respond(to request: ModbusServerRequest) -> ModbusServerResponse
}

/// A Modbus TCP server built on libmodbus (`modbus_tcp_listen`, `modbus_receive`, `modbus_reply`).
///
/// Each request is answered from a ``ModbusRequestHandler``: the server builds a libmodbus mapping covering
/// exactly the requested range, so any unit id and address can be served without a fixed register table.
/// The accept/receive loop blocks, so it runs on a dispatch queue of its own, never on the cooperative pool.
public final class ModbusTCPServer: Sendable {
    /// The port the server listens on (the kernel's choice when 0 was asked for).
    public let port: Int
    private let listenSocket: Int32
    private let handler: any ModbusRequestHandler
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Listens on `host:port` (port 0: any free port). The corresponding C function is `modbus_tcp_listen`.
    public init(host: String = "127.0.0.1", port: Int = 0, handler: any ModbusRequestHandler) throws(ModbusError) {
        guard let ctx = modbus_new_tcp(host, Int32(port)) else {
            throw ModbusError(function: "modbus_new_tcp", code: errno, context: "\(host):\(port)")
        }
        defer { modbus_free(ctx) }
        let s = modbus_tcp_listen(ctx, 16)
        guard s >= 0 else { throw ModbusError(function: "modbus_tcp_listen", code: errno, context: "\(host):\(port)") }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
        self.listenSocket = s
        self.handler = handler
        let host = host
        DispatchQueue(label: "metergate.modbus-server.\(self.port)").async { [self] in
            serve(host: host)
            finished.signal()
        }
    }

    /// Stops accepting and closes every connection; returns once the server thread has ended.
    public func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        shutdown(listenSocket, Int32(SHUT_RDWR))
        finished.wait()
        Glibc.close(listenSocket)
    }

    deinit { stop() }

    private func serve(host: String) {
        guard let ctx = modbus_new_tcp(host, Int32(port)) else { return }
        defer { modbus_free(ctx) }
        var clients: [Int32] = []
        defer { for c in clients { Glibc.close(c) } }
        var query = [UInt8](repeating: 0, count: Int(CModbus_TCP_MAX_ADU_LENGTH()))
        let headerLength = Int(modbus_get_header_length(ctx))

        while !stopped.load(ordering: .acquiring) {
            var fds = [pollfd(fd: listenSocket, events: Int16(POLLIN), revents: 0)]
            fds += clients.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), 200)
            if ready <= 0 { continue }
            if fds[0].revents != 0 {
                let c = accept(listenSocket, nil, nil)
                if c >= 0 { clients.append(c) } else if stopped.load(ordering: .acquiring) { return }
            }
            for entry in fds.dropFirst() where entry.revents != 0 {
                modbus_set_socket(ctx, entry.fd)
                let n = query.withUnsafeMutableBytes { CModbus_receive(ctx, $0.baseAddress) }
                if n <= 0 {
                    Glibc.close(entry.fd)
                    clients.removeAll { $0 == entry.fd }
                    continue
                }
                let frame = Array(query[0..<Int(n)])
                guard let request = ServedRequest(frame: frame, headerLength: headerLength) else { continue }
                var response = handler.respond(to: request.request)
                while case .delayed(let delay, let inner) = response {
                    sleepFor(delay)
                    response = inner
                }
                if case .corrupted(let values) = response {
                    // TCP has no CRC: damage the one thing a client can check, the byte count.
                    var pdu: [UInt8] = [UInt8(request.request.functionCode), UInt8(truncatingIfNeeded: max(0, values.count * 2 - 2))]
                    for v in values.dropLast() { pdu += [UInt8(v >> 8), UInt8(v & 0xFF)] }
                    let mbap: [UInt8] = [frame[0], frame[1], 0, 0, UInt8((pdu.count + 1) >> 8), UInt8((pdu.count + 1) & 0xFF), frame[6]]
                    writeAll(entry.fd, mbap + pdu)
                    continue
                }
                reply(ctx: ctx, frame: frame, request: request.request, response: response)
            }
        }
    }
}

/// A Modbus RTU server on a serial device or pseudo-terminal, built on libmodbus, serving several unit ids.
///
/// libmodbus's RTU `modbus_receive` drops every request not addressed to the context's own slave id, so one
/// context could serve only one unit. This server reads and frames requests itself (length from the
/// function code, CRC checked), then answers through libmodbus (`modbus_set_slave`, `modbus_reply`,
/// `modbus_reply_exception`), so the bytes on the wire still come from libmodbus.
/// The loop blocks in `poll`/`read`, so it runs on a dispatch queue of its own.
public final class ModbusRTUServer: Sendable {
    public let settings: SerialSettings
    private let handler: any ModbusRequestHandler
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let emulateWireTime: Bool
    /// Requests received with a valid CRC, and frames dropped for a bad CRC or framing.
    private let counters = Mutex<(requests: Int, badFrames: Int)>((0, 0))

    /// Opens `settings.device` and starts serving.
    ///
    /// - Parameter emulateWireTime: on a pseudo-terminal bytes move instantly; when true, each answer waits
    ///   for the time the request and the answer would take on a real line at `settings.baud`, plus the
    ///   3.5-character silence that ends the request.
    /// The corresponding C functions are `modbus_new_rtu` and `modbus_connect`.
    public init(settings: SerialSettings, handler: any ModbusRequestHandler, emulateWireTime: Bool = false) throws(ModbusError) {
        self.settings = settings
        self.handler = handler
        self.emulateWireTime = emulateWireTime
        let parity = CChar(bitPattern: settings.parity.rawValue.asciiValue ?? 78)
        guard let ctx = modbus_new_rtu(settings.device, Int32(settings.baud), parity, Int32(settings.dataBits), Int32(settings.stopBits)) else {
            throw ModbusError(function: "modbus_new_rtu", code: errno, context: settings.device)
        }
        guard modbus_connect(ctx) == 0 else {
            let e = errno
            modbus_free(ctx)
            throw ModbusError(function: "modbus_connect", code: e, context: settings.device)
        }
        // The context is handed to the server thread, which alone uses and frees it.
        nonisolated(unsafe) let context = ctx
        DispatchQueue(label: "metergate.modbus-rtu-server.\(settings.device)").async { [self] in
            serve(ctx: context)
            modbus_close(context)
            modbus_free(context)
            finished.signal()
        }
    }

    /// Stops serving and closes the device; returns once the server thread has ended.
    public func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        finished.wait()
    }

    deinit { stop() }

    /// Requests answered or refused so far, and frames dropped for a bad CRC or framing.
    public var statistics: (requests: Int, badFrames: Int) { counters.withLock { $0 } }

    private func serve(ctx: OpaquePointer) {
        let fd = modbus_get_socket(ctx)
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while !stopped.load(ordering: .acquiring) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            // A silence longer than any inter-character gap ends a partial frame: drop it as line noise.
            let ready = poll(&pfd, 1, buffer.isEmpty ? 200 : 50)
            if ready <= 0 {
                if !buffer.isEmpty { counters.withLock { $0.badFrames += 1 }; buffer.removeAll() }
                continue
            }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { if n < 0 && errno != EINTR && errno != EAGAIN { usleep(50_000) }; continue }
            buffer += chunk[0..<n]
            while let length = RTUFraming.requestLength(buffer), buffer.count >= length {
                let frame = Array(buffer[0..<length])
                buffer.removeFirst(length)
                guard RTUFraming.checkCRC(frame) else {
                    counters.withLock { $0.badFrames += 1 }
                    buffer.removeAll()
                    break
                }
                counters.withLock { $0.requests += 1 }
                handle(ctx: ctx, fd: fd, frame: frame)
            }
            if buffer.count >= 2 && RTUFraming.requestLength(buffer) == nil {
                // A function code we cannot frame: wait for silence and drop it.
                counters.withLock { $0.badFrames += 1 }
                buffer.removeAll()
            }
        }
    }

    private func handle(ctx: OpaquePointer, fd: Int32, frame: [UInt8]) {
        guard let request = ServedRequest(frame: frame, headerLength: 1) else { return }
        let unit = request.request.unit
        var response = handler.respond(to: request.request)
        if unit == 0 { return }   // broadcast: never answered
        while case .delayed(let delay, let inner) = response {
            sleepFor(delay)
            response = inner
        }
        if emulateWireTime, response != .noAnswer {
            let answerBytes: Int
            switch response {
            case .values(let v), .corrupted(let v): answerBytes = 5 + 2 * v.count
            default: answerBytes = 5
            }
            // The request and answer frames, and the 3.5-character silence the device waits to see the request end.
            sleepFor(RTUFraming.wireTime(bytes: frame.count + answerBytes, settings: settings) + RTUFraming.interFrameGap(settings))
        }
        switch response {
        case .corrupted(let values):
            var adu: [UInt8] = [UInt8(unit), UInt8(request.request.functionCode), UInt8(truncatingIfNeeded: values.count * 2)]
            for v in values { adu += [UInt8(v >> 8), UInt8(v & 0xFF)] }
            let crc = RTUFraming.crc16(adu)
            adu += [UInt8(crc & 0xFF) ^ 0x5A, UInt8(crc >> 8)]   // a wrong CRC, as line noise would leave
            writeAll(fd, adu)
        default:
            modbus_set_slave(ctx, Int32(unit))
            reply(ctx: ctx, frame: frame, request: request.request, response: response)
        }
    }
}

/// A parsed read request.
struct ServedRequest {
    let request: ModbusServerRequest

    init?(frame: [UInt8], headerLength: Int) {
        guard frame.count >= headerLength + 5 else { return nil }
        let unit = Int(frame[headerLength - 1])
        let function = Int(frame[headerLength])
        let address = Int(frame[headerLength + 1]) << 8 | Int(frame[headerLength + 2])
        let count = Int(frame[headerLength + 3]) << 8 | Int(frame[headerLength + 4])
        request = ModbusServerRequest(unit: unit, functionCode: function, address: address, count: count)
    }
}

/// Answers `frame` through libmodbus: values via a mapping that covers exactly the request, or an exception.
/// Requests other than reads (FC 01–04) are refused with "illegal function".
private func reply(ctx: OpaquePointer, frame: [UInt8], request: ModbusServerRequest, response: ModbusServerResponse) {
    let function = request.functionCode
    guard [1, 2, 3, 4].contains(function) else {
        _ = frame.withUnsafeBytes { CModbus_reply_exception(ctx, $0.baseAddress, UInt32(ModbusException.illegalFunction.rawValue)) }
        return
    }
    switch response {
    case .noAnswer, .delayed, .corrupted:
        return
    case .exception(let e):
        _ = frame.withUnsafeBytes { CModbus_reply_exception(ctx, $0.baseAddress, UInt32(e.rawValue)) }
    case .values(let values) where values.count != request.count:
        _ = frame.withUnsafeBytes { CModbus_reply_exception(ctx, $0.baseAddress, UInt32(ModbusException.serverDeviceFailure.rawValue)) }
    case .values(let values):
        let a = UInt32(request.address), n = UInt32(request.count)
        let mapping: UnsafeMutablePointer<modbus_mapping_t>?
        switch function {
        case 1: mapping = modbus_mapping_new_start_address(a, n, 0, 0, 0, 0, 0, 0)
        case 2: mapping = modbus_mapping_new_start_address(0, 0, a, n, 0, 0, 0, 0)
        case 3: mapping = modbus_mapping_new_start_address(0, 0, 0, 0, a, n, 0, 0)
        default: mapping = modbus_mapping_new_start_address(0, 0, 0, 0, 0, 0, a, n)
        }
        guard let mapping else { return }
        defer { modbus_mapping_free(mapping) }
        for (i, v) in values.enumerated() {
            switch function {
            case 1: mapping.pointee.tab_bits[i] = v == 0 ? 0 : 1
            case 2: mapping.pointee.tab_input_bits[i] = v == 0 ? 0 : 1
            case 3: mapping.pointee.tab_registers[i] = v
            default: mapping.pointee.tab_input_registers[i] = v
            }
        }
        _ = frame.withUnsafeBytes { CModbus_reply(ctx, $0.baseAddress, Int32(frame.count), mapping) }
    }
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { if errno == EINTR || errno == EAGAIN { continue }; return }
        offset += n
    }
}

/// Blocks the calling (server) thread; never called on the cooperative pool.
private func sleepFor(_ d: Duration) {
    let (s, atto) = d.components
    var request = timespec(tv_sec: Int(max(0, s)), tv_nsec: Int(max(0, atto / 1_000_000_000)))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

/// Modbus RTU framing arithmetic: frame lengths, CRC-16/MODBUS, and time on the wire.
public enum RTUFraming {
    /// CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF); sent low byte first.
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0xFFFF
        for b in bytes {
            crc ^= UInt16(b)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1 }
        }
        return crc
    }

    /// Whether the last two bytes of `frame` are the CRC of the rest.
    public static func checkCRC(_ frame: [UInt8]) -> Bool {
        guard frame.count >= 4 else { return false }
        let crc = crc16(frame[0..<(frame.count - 2)])
        return frame[frame.count - 2] == UInt8(crc & 0xFF) && frame[frame.count - 1] == UInt8(crc >> 8)
    }

    /// The length of the request frame starting `buffer`, once enough of it is there to tell; nil if unknown.
    public static func requestLength(_ buffer: [UInt8]) -> Int? {
        guard buffer.count >= 2 else { return buffer.isEmpty ? nil : Int.max }
        switch buffer[1] {
        case 1...6: return 8
        case 15, 16: return buffer.count >= 7 ? 9 + Int(buffer[6]) : Int.max
        default: return nil
        }
    }

    /// Bits on the wire per character: start bit, data bits, parity bit if any, stop bits.
    public static func bitsPerCharacter(_ s: SerialSettings) -> Int {
        1 + s.dataBits + (s.parity == .none ? 0 : 1) + s.stopBits
    }

    /// The time `bytes` characters take on the line.
    public static func wireTime(bytes: Int, settings: SerialSettings) -> Duration {
        .nanoseconds(Int64(bytes * bitsPerCharacter(settings)) * 1_000_000_000 / Int64(max(settings.baud, 1)))
    }

    /// The silence that separates frames: 3.5 characters, fixed at 1.75 ms above 19 200 baud (Modbus over Serial Line).
    public static func interFrameGap(_ s: SerialSettings) -> Duration {
        if s.baud > 19_200 { return .microseconds(1750) }
        return .nanoseconds(Int64(35 * bitsPerCharacter(s)) * 100_000_000 / Int64(max(s.baud, 1)))
    }

    /// The least time one read of `count` registers can take on the line: request (8 bytes) and answer
    /// (5 + 2 × count bytes), each followed by the 3.5-character gap. Device turnaround is not included.
    public static func readCycleLimit(registers count: Int, settings: SerialSettings) -> Duration {
        wireTime(bytes: 8 + 5 + 2 * count, settings: settings) + interFrameGap(settings) * 2
    }
}
