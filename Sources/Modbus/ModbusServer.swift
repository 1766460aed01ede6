internal import CModbus
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a served device answers to one read request.
public enum ModbusServerResponse: Sendable, Hashable {
    /// Answer with these register (or coil: 0/1) values; the count must match the request.
    case values([UInt16])
    /// Answer with a Modbus exception.
    case exception(ModbusException)
    /// Do not answer at all (a dead device, or a request for a unit that is not on the bus).
    case noAnswer
}

/// One read request as the server saw it.
public struct ModbusServerRequest: Sendable, Hashable {
    public var unit: Int
    public var functionCode: Int
    public var address: Int
    public var count: Int
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
                answer(ctx: ctx, query: query, length: Int(n), headerLength: headerLength)
            }
        }
    }

    private func answer(ctx: OpaquePointer, query: [UInt8], length: Int, headerLength: Int) {
        let unit = Int(query[headerLength - 1])
        let function = Int(query[headerLength])
        let address = Int(query[headerLength + 1]) << 8 | Int(query[headerLength + 2])
        let count = Int(query[headerLength + 3]) << 8 | Int(query[headerLength + 4])
        guard [1, 2, 3, 4].contains(function) else {
            _ = query.withUnsafeBytes { CModbus_reply_exception(ctx, $0.baseAddress, UInt32(ModbusException.illegalFunction.rawValue)) }
            return
        }
        let request = ModbusServerRequest(unit: unit, functionCode: function, address: address, count: count)
        switch handler.respond(to: request) {
        case .noAnswer:
            return
        case .exception(let e):
            _ = query.withUnsafeBytes { CModbus_reply_exception(ctx, $0.baseAddress, UInt32(e.rawValue)) }
        case .values(let values) where values.count != count:
            _ = query.withUnsafeBytes { CModbus_reply_exception(ctx, $0.baseAddress, UInt32(ModbusException.serverDeviceFailure.rawValue)) }
        case .values(let values):
            let a = UInt32(address), n = Int32(count)
            let mapping: UnsafeMutablePointer<modbus_mapping_t>?
            switch function {
            case 1: mapping = modbus_mapping_new_start_address(a, UInt32(n), 0, 0, 0, 0, 0, 0)
            case 2: mapping = modbus_mapping_new_start_address(0, 0, a, UInt32(n), 0, 0, 0, 0)
            case 3: mapping = modbus_mapping_new_start_address(0, 0, 0, 0, a, UInt32(n), 0, 0)
            default: mapping = modbus_mapping_new_start_address(0, 0, 0, 0, 0, 0, a, UInt32(n))
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
            _ = query.withUnsafeBytes { CModbus_reply(ctx, $0.baseAddress, Int32(length), mapping) }
        }
    }
}
